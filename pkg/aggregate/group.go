package aggregate

import (
	"context"
	"errors"
	"io"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// Accumulator operators. The ones starting with "$_" are internal: they
// are the router half of a split $group and cannot be written by users.
const (
	accAvgMerge   = "$_avgMerge"   // sums {sum, count} partials, then divides
	accConcat     = "$_concat"     // concatenates partial $push arrays
	accUnion      = "$_union"      // unions partial $addToSet arrays
	partialSumKey = "sum"          // field of a partial $avg
	partialCntKey = "count"        // field of a partial $avg
	accAvgPartial = "$_avgPartial" // shard half of $avg: emits {sum, count}
)

// accSpec is one output field of a $group.
type accSpec struct {
	field string
	op    string
	arg   expr.Expr
}

type groupStage struct {
	id   expr.Expr
	accs []accSpec
}

var userAccumulators = map[string]bool{
	"$sum": true, "$avg": true, "$min": true, "$max": true, "$first": true, "$last": true,
	"$push": true, "$addToSet": true, "$count": true, "$mergeObjects": true,
}

func parseGroup(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(15947, "a group's fields must be specified in an object")
	}
	elems, err := expr.Elems(arg.Value)
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $group")
	}
	g := &groupStage{}
	seen := map[string]bool{}
	for _, el := range elems {
		if el.Key == "_id" {
			if g.id != nil {
				return nil, mongoerr.New(15948, "a group's _id may only be specified once")
			}
			if g.id, err = expr.Parse(el.Value); err != nil {
				return nil, err
			}
			continue
		}
		// Checks in MongoDB's order (AccumulationStatement parsing).
		var acc []expr.Elem
		if el.Value.Type == bson.TypeEmbeddedDocument {
			if acc, err = expr.Elems(el.Value.Value); err != nil {
				return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $group")
			}
		}
		if len(acc) == 0 || !strings.HasPrefix(acc[0].Key, "$") {
			return nil, mongoerr.New(40234, "The field '%s' must be an accumulator object", el.Key)
		}
		if strings.Contains(el.Key, ".") {
			return nil, mongoerr.New(40235, "The field name '%s' cannot contain '.'", el.Key)
		}
		if strings.HasPrefix(el.Key, "$") || el.Key == "" {
			return nil, mongoerr.New(40236, "The field name '%s' cannot be an operator name", el.Key)
		}
		if len(acc) != 1 {
			return nil, mongoerr.New(40238, "The field '%s' must specify one accumulator", el.Key)
		}
		if acc[0].Value.Type == bson.TypeArray && acc[0].Key != "$count" {
			return nil, mongoerr.New(40237, "The %s accumulator is a unary operator", acc[0].Key)
		}
		if seen[el.Key] {
			return nil, mongoerr.New(16406, "duplicate field name specified in $group: %s", el.Key)
		}
		seen[el.Key] = true
		op := acc[0].Key
		if !userAccumulators[op] {
			return nil, mongoerr.New(15952, "unknown group operator '%s'", op)
		}
		var argExpr expr.Expr
		if op == "$count" {
			if acc[0].Value.Type != bson.TypeEmbeddedDocument || len(acc[0].Value.Value) != 5 {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "$count takes no arguments, i.e. $count:{}")
			}
			op, argExpr = "$sum", literalOne()
		} else {
			if argExpr, err = expr.Parse(acc[0].Value); err != nil {
				return nil, err
			}
		}
		g.accs = append(g.accs, accSpec{field: el.Key, op: op, arg: argExpr})
	}
	if g.id == nil {
		return nil, mongoerr.New(15955, "a group specification must include an _id")
	}
	return g, nil
}

func (*groupStage) kind() string { return "$group" }

// accState is the running state of one accumulator in one group.
type accState struct {
	op    string
	sum   expr.Sum      // $sum, $avg and their partial forms
	count int64         // $_avgMerge: the sum of the partial counts
	val   bson.RawValue // $min, $max, $first, $last, $mergeObjects
	set   bool
	arr   []bson.RawValue     // $push, $addToSet
	seen  map[string]struct{} // $addToSet: encoded members
	mem   int64
}

// add folds one evaluated input into the state and returns the change in
// held bytes.
func (a *accState) add(v bson.RawValue) (int64, error) {
	switch a.op {
	case "$sum", "$avg", accAvgPartial:
		a.sum.Add(v)
	case accAvgMerge:
		if v.Type == bson.TypeEmbeddedDocument {
			a.sum.Add(expr.Lookup(v.Value, partialSumKey))
			if n, ok := expr.Lookup(v.Value, partialCntKey).AsInt64OK(); ok {
				a.count += n
			}
		}
	case "$min", "$max":
		if expr.IsNullish(v) {
			return 0, nil
		}
		if !a.set {
			a.val, a.set = v, true
			return int64(len(v.Value)), nil
		}
		c := expr.Compare(v, a.val)
		if (a.op == "$min" && c < 0) || (a.op == "$max" && c > 0) {
			d := int64(len(v.Value) - len(a.val.Value))
			a.val = v
			return d, nil
		}
	case "$first":
		if !a.set {
			if v.Type == 0 {
				v = expr.Null()
			}
			a.val, a.set = v, true
			return int64(len(v.Value)), nil
		}
	case "$last":
		if v.Type == 0 {
			v = expr.Null()
		}
		d := int64(len(v.Value) - len(a.val.Value))
		a.val, a.set = v, true
		return d, nil
	case "$push":
		if v.Type != 0 {
			a.arr = append(a.arr, v)
			return int64(len(v.Value)) + 24, nil
		}
	case "$addToSet":
		if v.Type != 0 {
			return a.addToSet(v), nil
		}
	case accConcat, accUnion:
		if v.Type != bson.TypeArray {
			return 0, nil
		}
		elems, err := expr.Elems(v.Value)
		if err != nil {
			return 0, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON array in $group merge")
		}
		var d int64
		for _, e := range elems {
			if a.op == accConcat {
				a.arr = append(a.arr, e.Value)
				d += int64(len(e.Value.Value)) + 24
			} else {
				d += a.addToSet(e.Value)
			}
		}
		return d, nil
	case "$mergeObjects":
		if expr.IsNullish(v) {
			return 0, nil
		}
		if v.Type != bson.TypeEmbeddedDocument {
			return 0, mongoerr.New(40400, "$mergeObjects requires object inputs, but input %s is of type %s", v.String(), expr.TypeName(v))
		}
		if !a.set {
			a.val, a.set = v, true
			return int64(len(v.Value)), nil
		}
		old := len(a.val.Value)
		m, err := expr.MergeObjects(a.val, v)
		if err != nil {
			return 0, err
		}
		a.val = m
		return int64(len(m.Value) - old), nil
	}
	return 0, nil
}

func (a *accState) addToSet(v bson.RawValue) int64 {
	if a.seen == nil {
		a.seen = map[string]struct{}{}
	}
	k := string(keys.Encode(v))
	if _, dup := a.seen[k]; dup {
		return 0
	}
	a.seen[k] = struct{}{}
	a.arr = append(a.arr, v)
	return int64(len(v.Value)+len(k)) + 48
}

func (a *accState) result() bson.RawValue {
	switch a.op {
	case "$sum":
		return a.sum.Value()
	case "$avg":
		return a.sum.Avg()
	case accAvgMerge:
		return expr.Avg(a.sum.Value(), a.count)
	case accAvgPartial:
		var b expr.DocBuilder
		b.Append(partialSumKey, a.sum.Value())
		b.Append(partialCntKey, expr.Int64(a.sum.Count()))
		return expr.Doc(b.Doc())
	case "$push", "$addToSet", accConcat, accUnion:
		return expr.Array(a.arr)
	}
	if !a.set {
		return expr.Null()
	}
	return a.val
}

type group struct {
	id   bson.RawValue
	accs []accState
}

func (g *groupStage) open(in Source, rt *runtime) Source {
	return &blockingSource{fill: func(ctx context.Context) ([]bson.Raw, error) {
		groups := map[string]*group{}
		var order []*group
		var mem int64
		n := 0
		ectx := rt.ctx(nil)
		var keyBuf []byte
		for {
			d, err := in.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			n++
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			ectx.Root = d
			id, err := g.id.Eval(ectx)
			if err != nil {
				return nil, err
			}
			if id.Type == 0 {
				id = expr.Null()
			}
			kb := keys.AppendValue(keyBuf[:0], id)
			keyBuf = kb
			grp := groups[string(kb)] // no allocation for the lookup
			if grp == nil {
				k := string(kb)
				grp = &group{id: id, accs: make([]accState, len(g.accs))}
				for i, a := range g.accs {
					grp.accs[i].op = a.op
				}
				groups[k] = grp
				order = append(order, grp)
				mem += int64(2*len(k)) + 96 + int64(len(g.accs))*96
			}
			for i, a := range g.accs {
				v, err := a.arg.Eval(ectx)
				if err != nil {
					return nil, err
				}
				dm, err := grp.accs[i].add(v)
				if err != nil {
					return nil, err
				}
				mem += dm
			}
			if mem > rt.memLimit {
				return nil, memErr("$group", rt.memLimit)
			}
		}
		out := make([]bson.Raw, 0, len(order))
		for _, grp := range order {
			var b expr.DocBuilder
			b.Append("_id", grp.id)
			for i, a := range g.accs {
				b.Append(a.field, grp.accs[i].result())
			}
			out = append(out, b.Doc())
		}
		return out, nil
	}}
}
