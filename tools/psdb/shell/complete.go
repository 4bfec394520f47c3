package shell

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/dop251/goja"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// complete is the REPL's Tab completion: the word before the cursor
// (identifiers and dots) is completed as a global or shell command, a db
// method or collection (db.), a collection method (db.<coll>.), or an sh
// or rs helper.
func (s *Shell) complete(line string, pos int) (head string, completions []string, tail string) {
	if pos > len(line) {
		pos = len(line)
	}
	head, tail = line[:pos], line[pos:]
	i := len(head)
	for i > 0 && (isIdentChar(head[i-1]) || head[i-1] == '.') {
		i--
	}
	word := head[i:]
	head = head[:i]
	var cands []string
	parts := strings.Split(word, ".")
	switch {
	case len(parts) == 3 && parts[0] == "db":
		for _, m := range s.collMethodNames() {
			cands = append(cands, "db."+parts[1]+"."+m)
		}
	case len(parts) == 2 && parts[0] == "db":
		names := s.dbMethodNames()
		if s.client != nil {
			ctx, cancel := context.WithTimeout(s.opCtx(), time.Second)
			colls, err := s.client.Database(s.DB()).ListCollectionNames(ctx, bson.D{})
			cancel()
			if err == nil {
				names = append(names, colls...)
			}
		}
		for _, n := range names {
			cands = append(cands, "db."+n)
		}
	case len(parts) == 2 && (parts[0] == "sh" || parts[0] == "rs"):
		if o, ok := s.vm.Get(parts[0]).(*goja.Object); ok {
			for _, k := range o.Keys() {
				cands = append(cands, parts[0]+"."+k)
			}
		}
	case len(parts) == 1:
		cands = append(cands, "use", "show", "it", "exit", "quit", "help", "db", "sh", "rs", "print", "printjson",
			"ObjectId", "ISODate", "NumberLong", "NumberInt", "NumberDecimal", "Timestamp", "UUID", "BinData",
			"MinKey", "MaxKey", "sleep", "quit()")
	}
	slices.Sort(cands)
	for _, c := range slices.Compact(cands) {
		if strings.HasPrefix(c, word) {
			completions = append(completions, c)
		}
	}
	return head, completions, tail
}

// collMethodNames are the methods of a collection handle, sorted.
func (s *Shell) collMethodNames() []string {
	m := s.collMethods(&collObject{s: s, db: "x", coll: "x"})
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// dbMethodNames are the methods of the db handle, sorted.
func (s *Shell) dbMethodNames() []string {
	o, ok := s.vm.Get("db").(*goja.Object)
	if !ok {
		return nil
	}
	d, ok := s.conv.reg[o].(*dbObject)
	if !ok {
		return nil
	}
	names := make([]string, 0, len(d.methods))
	for k := range d.methods {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
