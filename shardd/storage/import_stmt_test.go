package storage

import (
	"bytes"
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ImportStatements records what it is given once, skips statements
// already recorded and those older than the session's newest txnNumber,
// and carries each record in a no-op entry a secondary applies.
func TestImportStatements(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if _, _, err := e.RecordStatement(ctx, stmtW(t, 7, 0, bson.D{{Key: "n", Value: 1}})); err != nil {
		t.Fatal(err)
	}
	in := []StmtWrite{
		stmtW(t, 5, 0, bson.D{{Key: "n", Value: 5}}), // older than txn 7: skipped
		stmtW(t, 7, 0, bson.D{{Key: "n", Value: 9}}), // recorded already: skipped
		stmtW(t, 7, 1, bson.D{{Key: "n", Value: 2}}), // new
	}
	n, at, err := e.ImportStatements(ctx, in)
	if err != nil || n != 1 || at.IsZero() {
		t.Fatalf("import: %d recorded at %s, %v; want 1", n, at, err)
	}
	rec, ok, err := e.LookupStatement(in[2].Statement)
	if err != nil || !ok || !bytes.Equal(rec.Result, in[2].Result) || rec.OpTime != at {
		t.Fatalf("lookup of the imported statement: %+v %v %v", rec, ok, err)
	}
	if rec, _, _ := e.LookupStatement(in[1].Statement); !bytes.Equal(rec.Result, mustDoc(t, bson.D{{Key: "n", Value: 1}})) {
		t.Fatalf("an import replaced a recorded result: %s", rec.Result)
	}
	if n, _, err := e.ImportStatements(ctx, in); err != nil || n != 0 {
		t.Fatalf("second import: %d, %v; want 0", n, err)
	}
	// A newer txnNumber drops the older records, as a client write does.
	if n, _, err := e.ImportStatements(ctx, []StmtWrite{stmtW(t, 8, 0, nil)}); err != nil || n != 1 {
		t.Fatalf("import of txn 8: %d, %v", n, err)
	}
	if _, ok, _ := e.LookupStatement(in[2].Statement); ok {
		t.Fatal("txn 7's record survived the import of txn 8")
	}

	// A secondary applying the primary's entries records the same.
	sec := openTest(t, Options{})
	ens, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sec.ApplyOplog(ctx, ens); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := sec.LookupStatement(Statement{LSID: testLSID, TxnNumber: 8, StmtID: 0}); err != nil || !ok {
		t.Fatalf("the secondary has no record of the imported statement: %v %v", ok, err)
	}
}
