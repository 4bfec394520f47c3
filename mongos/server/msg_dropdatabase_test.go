package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// dbStats sums a database over the shards, and dropDatabase removes its
// collections everywhere and its catalog record.
func TestDBStatsAndDropDatabase(t *testing.T) {
	ac := startAdminCluster(t, 2)
	ctx := testCtx(t)
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "ddb"}, {Key: "primaryShard", Value: ac.shards[0]}})
	ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "ddb.sharded"}, {Key: "key", Value: bson.D{{Key: "_id", Value: "hashed"}}}})
	db := ac.cli.Database("ddb")
	var docs []any
	for i := range 100 {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: "xxxxxxxxxx"}})
	}
	if _, err := db.Collection("sharded").InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("plain").InsertMany(ctx, docs[:10]); err != nil {
		t.Fatal(err)
	}
	var st bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "dbStats", Value: 1}}).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st["db"] != "ddb" || st["collections"] != int32(2) || st["objects"] != int32(110) || st["dataSize"].(float64) <= 0 || st["indexes"] != int32(2) {
		t.Fatalf("dbStats: %v", st)
	}
	var dr bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "dropDatabase", Value: 1}}).Decode(&dr); err != nil || dr["dropped"] != "ddb" {
		t.Fatalf("dropDatabase: %v %v", dr, err)
	}
	names, err := ac.cli.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == "ddb" {
			t.Fatalf("ddb still listed after dropDatabase: %v", names)
		}
	}
	if got := ac.find(t, "collections", bson.D{{Key: "_id", Value: "ddb.sharded"}}); len(got) != 0 {
		t.Fatalf("config.collections after dropDatabase: %v", got)
	}
	if n, err := db.Collection("plain").CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Fatalf("count after dropDatabase: %d, %v", n, err)
	}
	// A missing database drops fine; admin does not.
	if err := db.RunCommand(ctx, bson.D{{Key: "dropDatabase", Value: 1}}).Err(); err != nil {
		t.Fatalf("second dropDatabase: %v", err)
	}
	if err := ac.cli.Database("admin").RunCommand(ctx, bson.D{{Key: "dropDatabase", Value: 1}}).Err(); err == nil {
		t.Fatal("dropDatabase of admin succeeded")
	}
}
