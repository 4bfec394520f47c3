package update

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// maxDocSize is MongoDB's maximum BSON document size.
const maxDocSize = 16 * 1024 * 1024

// maxPadding is how far MongoDB lets an update extend an array with nulls
// when it sets an element past the end.
const maxPadding = 1500000

// Roles of a concrete path of a $rename.
const (
	roleNormal = iota
	roleRenameFrom
	roleRenameTo
)

// target is one operator applied at one concrete path: positional
// components resolved to array indexes.
type target struct {
	o    *op
	path []string
	role int
	val  bson.RawValue // roleRenameTo: the value moved
}

// Apply applies the update to doc and returns the new document and whether
// it differs from doc. The input is never modified; when nothing changes
// the input is returned.
//
// Operators are applied in MongoDB 5.0's order: by path, field names
// compared as strings except that two array indexes compare as numbers.
// Existing fields keep their position; new fields are appended in that
// order.
func (u *Update) Apply(doc bson.Raw, ac ApplyContext) (bson.Raw, bool, error) {
	if err := validDoc(doc); err != nil {
		return nil, false, mongoerr.Wrap(err, mongoerr.InvalidBSON, "document to update is not valid BSON: %v", err)
	}
	var out bson.Raw
	var err error
	if u.isRepl {
		out, err = u.applyReplacement(doc)
	} else {
		out, err = u.applyOperators(doc, ac)
	}
	if err != nil {
		return nil, false, err
	}
	if len(out) > maxDocSize {
		return nil, false, mongoerr.New(mongoerr.BSONObjectTooLarge,
			"Resulting document after update is larger than %d", maxDocSize)
	}
	if bytes.Equal(out, doc) {
		return doc, false, nil
	}
	return out, true, nil
}

func (u *Update) applyReplacement(doc bson.Raw) (bson.Raw, error) {
	oldID, hasOld := lookupTop(doc, "_id")
	newID, hasNew := lookupTop(u.replacement, "_id")
	if hasOld && hasNew && !sameValue(oldID, newID) {
		return nil, mongoerr.New(mongoerr.ImmutableField,
			"After applying the update, the (immutable) field '_id' was found to have been altered to %s", formatElem("_id", newID))
	}
	// _id first (the stored one, unchanged), then the replacement's
	// other fields in their order.
	nd := &docNode{}
	switch {
	case hasOld:
		nd.fields = append(nd.fields, field{name: "_id", val: rawVal(oldID)})
	case hasNew:
		nd.fields = append(nd.fields, field{name: "_id", val: rawVal(newID)})
	}
	err := eachElem(u.replacement, func(key string, v bson.RawValue) {
		if key != "_id" {
			nd.fields = append(nd.fields, field{name: key, val: rawVal(v)})
		}
	})
	if err != nil {
		return nil, err
	}
	return nd.appendTo(nil), nil
}

func lookupTop(doc bson.Raw, name string) (bson.RawValue, bool) {
	v := lookupRaw(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}, name)
	return v, v.Type != 0
}

// sameValue is byte equality of type and value: what MongoDB's immutable
// field check and no-op detection use.
func sameValue(a, b bson.RawValue) bool {
	return a.Type == b.Type && bytes.Equal(a.Value, b.Value)
}

func (u *Update) applyOperators(doc bson.Raw, ac ApplyContext) (bson.Raw, error) {
	root, err := loadDoc(doc)
	if err != nil {
		return nil, err
	}
	docVal := bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}
	targets := make([]target, 0, len(u.ops))
	for _, o := range u.ops {
		if o.kind == opSetOnInsert && !ac.Inserting {
			continue
		}
		if o.kind == opRename {
			ts, err := renameTargets(root, docVal, o)
			if err != nil {
				return nil, err
			}
			targets = append(targets, ts...)
			continue
		}
		path, err := resolvePositional(o.path, ac.MatchPos)
		if err != nil {
			return nil, err
		}
		if !ac.Inserting && strings.HasPrefix(path[0], "$") && o.kind.allowsCreation() {
			return nil, mongoerr.New(mongoerr.DollarPrefixedFieldName, "%s", dollarFieldMessage(path[0], path[0]))
		}
		if !hasFilterComp(path) {
			targets = append(targets, target{o: o, path: path})
			continue
		}
		if err := u.expand(docVal, "", path, 0, nil, o, &targets); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(targets, func(i, j int) bool {
		return comparePaths(targets[i].path, targets[j].path) < 0
	})
	for i := 1; i < len(targets); i++ {
		if isPrefix(targets[i-1].path, targets[i].path) {
			return nil, mongoerr.New(mongoerr.ConflictingUpdateOperators,
				"Update created a conflict at '%s'", strings.Join(targets[i-1].path, "."))
		}
	}
	ap := applier{root: root, now: ac.Now, ts: ac.Timestamp}
	for i := range targets {
		if err := ap.apply(&targets[i]); err != nil {
			return nil, err
		}
	}
	if u.touchesID {
		if oldID, ok := lookupTop(doc, "_id"); ok {
			nv := root.get("_id")
			if nv == nil || !sameValue(oldID, nv.rawValue()) {
				return nil, mongoerr.New(mongoerr.ImmutableField,
					"Performing an update on the path '_id' would modify the immutable field '_id'")
			}
		}
	}
	return root.appendTo(make([]byte, 0, len(doc)+64)), nil
}

func hasFilterComp(path []string) bool {
	for _, c := range path {
		if _, ok := filterIdentifier(c); ok {
			return true
		}
	}
	return false
}

// resolvePositional replaces the positional $ with the matched index.
func resolvePositional(path []string, matchPos int) ([]string, error) {
	for i, c := range path {
		if c != "$" {
			continue
		}
		if matchPos < 0 {
			return nil, mongoerr.New(mongoerr.BadValue,
				"The positional operator did not find the match needed from the query.")
		}
		out := append([]string(nil), path...)
		out[i] = strconv.Itoa(matchPos)
		return out, nil
	}
	return path, nil
}

// expand resolves $[] and $[<id>] components against the document as it
// was before the update, adding one target per array element selected.
func (u *Update) expand(cur bson.RawValue, curName string, path []string, i int, prefix []string, o *op, out *[]target) error {
	if i == len(path) {
		*out = append(*out, target{o: o, path: append([]string(nil), prefix...)})
		return nil
	}
	c := path[i]
	id, isFilter := filterIdentifier(c)
	if !isFilter {
		return u.expand(lookupRaw(cur, c), c, path, i+1, append(prefix, c), o, out)
	}
	if cur.Type == 0 {
		return mongoerr.New(mongoerr.BadValue,
			"The path '%s' must exist in the document in order to apply array updates.", strings.Join(prefix, "."))
	}
	if cur.Type != bson.TypeArray {
		return mongoerr.New(mongoerr.BadValue,
			"Cannot apply array updates to non-array element %s", formatElem(curName, cur))
	}
	for j, e := range rawElems(cur) {
		if id != "" && !u.matchArrayFilter(id, e) {
			continue
		}
		idx := strconv.Itoa(j)
		if err := u.expand(e, idx, path, i+1, append(prefix, idx), o, out); err != nil {
			return err
		}
	}
	return nil
}

// comparePaths orders paths as MongoDB 5.0 applies them: component by
// component, as numbers when both are array indexes, else as strings.
func comparePaths(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		xi, xok := arrayIndex(x)
		yi, yok := arrayIndex(y)
		if xok && yok && xi != yi {
			if xi < yi {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	}
	return len(a) - len(b)
}

// renameTargets turns a $rename into the removal of its source and the
// setting of its destination, or nothing when the source is missing.
func renameTargets(root *docNode, docVal bson.RawValue, o *op) ([]target, error) {
	cur := docVal
	inArray := ""
	for i, c := range o.path {
		switch cur.Type {
		case bson.TypeEmbeddedDocument:
		case bson.TypeArray:
			if _, ok := arrayIndex(c); ok {
				if inArray == "" {
					inArray = o.path[i-1]
				}
				break
			}
			fallthrough
		default:
			return nil, mongoerr.New(mongoerr.PathNotViable,
				"cannot use the part (%s of %s) to traverse the element ({%s})", c, o.pathStr, formatElem(o.path[i-1], cur))
		}
		cur = lookupRaw(cur, c)
		if cur.Type == 0 {
			// A missing source makes the whole $rename a no-op.
			return nil, nil
		}
	}
	if inArray != "" {
		return nil, mongoerr.New(mongoerr.BadValue,
			"The source field cannot be an array element, '%s' in doc with %s has an array field called '%s'",
			o.pathStr, idElemString(root), inArray)
	}
	dst := docVal
	for _, c := range o.to[:len(o.to)-1] {
		dst = lookupRaw(dst, c)
		if dst.Type == bson.TypeArray {
			return nil, mongoerr.New(mongoerr.BadValue,
				"The destination field cannot be an array element, '%s' in doc with %s has an array field called '%s'",
				o.toStr, idElemString(root), c)
		}
		if dst.Type == 0 {
			break
		}
	}
	return []target{
		{o: o, path: o.path, role: roleRenameFrom},
		{o: o, path: o.to, role: roleRenameTo, val: cur},
	}, nil
}

// idElemString renders the _id element ("_id: 1"), or "no id".
func idElemString(root *docNode) string {
	if v := root.get("_id"); v != nil {
		return formatElem("_id", v.rawValue())
	}
	return "no id"
}

// applier applies targets to one document tree.
type applier struct {
	root *docNode
	now  time.Time
	ts   bson.Timestamp
}

// location is where a path leads in the tree.
type location struct {
	// Set when every component but the last exists: the container holding
	// the last component (a document or an array).
	pdoc *docNode
	parr *arrNode
	last string
	// missing >= 0: path[missing] is absent from the container above
	// (pdoc/parr); the rest of the path must be created.
	missing int
	// nonViable: the path runs into a value that cannot hold the next
	// component (a scalar, or an array and a non-numeric field name).
	nonViable bool
	nvElem    string // the offending element, rendered "name: value"
	nvNext    string // the component that cannot be created
}

func walk(root *docNode, path []string) (location, error) {
	loc := location{pdoc: root, missing: -1}
	curName := ""
	var curVal *value
	for i := 0; i < len(path); i++ {
		c := path[i]
		if loc.parr != nil {
			if _, ok := arrayIndex(c); !ok {
				loc.nonViable = true
				loc.nvElem = formatElem(curName, curVal.rawValue())
				loc.nvNext = c
				return loc, nil
			}
		}
		if i == len(path)-1 {
			loc.last = c
			return loc, nil
		}
		var v *value
		if loc.pdoc != nil {
			v = loc.pdoc.get(c)
		} else {
			n, _ := arrayIndex(c)
			if n < len(loc.parr.elems) {
				v = &loc.parr.elems[n]
			}
		}
		if v == nil {
			loc.missing = i
			return loc, nil
		}
		switch {
		case v.isDoc():
			d, err := v.asDoc()
			if err != nil {
				return loc, err
			}
			loc.pdoc, loc.parr = d, nil
		case v.isArr():
			a, err := v.asArr()
			if err != nil {
				return loc, err
			}
			loc.pdoc, loc.parr = nil, a
		default:
			loc.nonViable = true
			loc.nvElem = formatElem(c, v.rawValue())
			loc.nvNext = path[i+1]
			return loc, nil
		}
		curName, curVal = c, v
	}
	return loc, nil
}

// get returns the value at the location's last component, or nil.
func (l *location) get() *value {
	if l.pdoc != nil {
		return l.pdoc.get(l.last)
	}
	n, _ := arrayIndex(l.last)
	if n < len(l.parr.elems) {
		return &l.parr.elems[n]
	}
	return nil
}

// setIn sets component c of a container, padding arrays with nulls.
func setIn(pdoc *docNode, parr *arrNode, c string, v value) error {
	if pdoc != nil {
		pdoc.set(c, v)
		return nil
	}
	n, _ := arrayIndex(c)
	if n < len(parr.elems) {
		parr.elems[n] = v
		return nil
	}
	if n-len(parr.elems) > maxPadding {
		return mongoerr.New(mongoerr.CannotBackfillArray, "can't backfill more than %d elements", maxPadding)
	}
	for len(parr.elems) < n {
		parr.elems = append(parr.elems, nullValue())
	}
	parr.elems = append(parr.elems, v)
	return nil
}

// action is what an operator does to the value at its path.
type action int

const (
	keep action = iota
	replace
	remove
)

func (ap *applier) apply(t *target) error {
	loc, err := walk(ap.root, t.path)
	if err != nil {
		return err
	}
	creates := t.o.kind.allowsCreation() && t.role != roleRenameFrom
	switch {
	case loc.nonViable:
		if t.o.kind == opUnset || t.role == roleRenameFrom {
			return nil
		}
		if !creates {
			// $pop, $pull and $pullAll ignore missing paths but refuse
			// ones that could never exist.
			return mongoerr.New(mongoerr.PathNotViable, "Cannot use the part (%s) of (%s) to traverse the element ({%s})",
				loc.nvNext, strings.Join(t.path, "."), loc.nvElem)
		}
		return mongoerr.New(mongoerr.PathNotViable, "Cannot create field '%s' in element {%s}", loc.nvNext, loc.nvElem)
	case loc.missing >= 0:
		if !creates {
			return nil
		}
		act, nv, err := ap.compute(t, nil)
		if err != nil || act != replace {
			return err
		}
		if err := checkDepth(t.path, &nv); err != nil {
			return err
		}
		// Build the missing documents from the innermost out.
		for i := len(t.path) - 1; i > loc.missing; i-- {
			nv = value{doc: &docNode{fields: []field{{name: t.path[i], val: nv}}}}
		}
		return setIn(loc.pdoc, loc.parr, t.path[loc.missing], nv)
	}
	cur := loc.get()
	act, nv, err := ap.compute(t, cur)
	if err != nil {
		return err
	}
	switch act {
	case replace:
		if err := checkDepth(t.path, &nv); err != nil {
			return err
		}
		return setIn(loc.pdoc, loc.parr, loc.last, nv)
	case remove:
		if loc.pdoc != nil {
			loc.pdoc.remove(loc.last)
		} else if cur != nil {
			// Unsetting an array element leaves null in its place.
			*cur = nullValue()
		}
	}
	return nil
}

// compute decides what the target's operator does to cur (nil = missing).
func (ap *applier) compute(t *target, cur *value) (action, value, error) {
	o := t.o
	switch t.role {
	case roleRenameFrom:
		if cur == nil {
			return keep, value{}, nil
		}
		return remove, value{}, nil
	case roleRenameTo:
		return replace, rawVal(t.val), nil
	}
	switch o.kind {
	case opSet, opSetOnInsert:
		if cur != nil && cur.doc == nil && cur.arr == nil && sameValue(cur.raw, o.arg) {
			return keep, value{}, nil
		}
		return replace, rawVal(o.arg), nil
	case opUnset:
		if cur == nil {
			return keep, value{}, nil
		}
		return remove, value{}, nil
	case opInc, opMul:
		if cur == nil {
			if o.kind == opMul {
				// 0 of the multiplier's type (and, for decimals, scale).
				z, _ := arith(o.arg, int32Val(0), true)
				return replace, rawVal(z), nil
			}
			return replace, rawVal(o.arg), nil
		}
		old := cur.rawValue()
		if !isNumber(old.Type) {
			return keep, value{}, mongoerr.New(mongoerr.TypeMismatch,
				"Cannot apply %s to a value of non-numeric type. %s has the field '%s' of non-numeric type %s",
				o.kind, idString(ap.root), t.path[len(t.path)-1], typeName(old.Type))
		}
		res, ok := arith(old, o.arg, o.kind == opMul)
		if !ok {
			return keep, value{}, mongoerr.New(mongoerr.BadValue,
				"Failed to apply %s operations to current value (%s) for document %s", o.kind, numString(old), idString(ap.root))
		}
		if sameValue(res, old) {
			return keep, value{}, nil
		}
		return replace, rawVal(res), nil
	case opMin, opMax:
		if cur == nil {
			return replace, rawVal(o.arg), nil
		}
		c := keys.Compare(o.arg, cur.rawValue())
		if (o.kind == opMin && c < 0) || (o.kind == opMax && c > 0) {
			return replace, rawVal(o.arg), nil
		}
		return keep, value{}, nil
	case opCurrentDate:
		now := nowOrDefault(ap.now)
		if o.timestamp {
			if ap.ts != (bson.Timestamp{}) {
				return replace, rawVal(timestampVal(ap.ts.T, ap.ts.I)), nil
			}
			return replace, rawVal(timestampVal(uint32(now.Unix()), 1)), nil
		}
		return replace, rawVal(dateVal(now.UnixMilli())), nil
	case opPush:
		return ap.push(t, cur)
	case opAddToSet:
		return ap.addToSet(t, cur)
	case opPop, opPull, opPullAll:
		return ap.cull(t, cur)
	}
	return keep, value{}, nil
}

func (ap *applier) push(t *target, cur *value) (action, value, error) {
	o := t.o
	var elems []value
	if cur != nil {
		if !cur.isArr() {
			return keep, value{}, mongoerr.New(mongoerr.BadValue,
				"The field '%s' must be an array but is of type %s in document %s",
				t.path[len(t.path)-1], typeName(cur.typ()), idString(ap.root))
		}
		a, err := cur.asArr()
		if err != nil {
			return keep, value{}, err
		}
		elems = a.elems
	}
	add := make([]value, len(o.each))
	for i, e := range o.each {
		add[i] = rawVal(e)
	}
	pos := len(elems)
	if o.hasPosition {
		switch {
		case o.position >= 0 && o.position < int64(len(elems)):
			pos = int(o.position)
		case o.position < 0:
			pos = len(elems) + int(max(o.position, -int64(len(elems))))
		}
	}
	res := make([]value, 0, len(elems)+len(add))
	res = append(res, elems[:pos]...)
	res = append(res, add...)
	res = append(res, elems[pos:]...)
	if o.sort != nil {
		o.sort.sortValues(res)
	}
	if o.hasSlice {
		n := o.slice
		switch {
		case n >= 0 && n < int64(len(res)):
			res = res[:n]
		case n < 0 && n > -int64(len(res)):
			res = res[int64(len(res))+n:]
		}
	}
	return replace, value{arr: &arrNode{elems: res}}, nil
}

func (ap *applier) addToSet(t *target, cur *value) (action, value, error) {
	o := t.o
	var elems []value
	if cur != nil {
		if !cur.isArr() {
			return keep, value{}, mongoerr.New(mongoerr.BadValue,
				"Cannot apply $addToSet to non-array field. Field named '%s' has non-array type %s",
				t.path[len(t.path)-1], typeName(cur.typ()))
		}
		a, err := cur.asArr()
		if err != nil {
			return keep, value{}, err
		}
		elems = a.elems
	}
	existing := make([]bson.RawValue, len(elems))
	for i := range elems {
		existing[i] = elems[i].rawValue()
	}
	res := append([]value(nil), elems...)
	added := false
	for _, e := range o.each {
		dup := false
		for _, x := range existing {
			if keys.Compare(x, e) == 0 {
				dup = true
				break
			}
		}
		if !dup {
			existing = append(existing, e)
			res = append(res, rawVal(e))
			added = true
		}
	}
	if cur != nil && !added {
		return keep, value{}, nil
	}
	return replace, value{arr: &arrNode{elems: res}}, nil
}

// cull applies $pop, $pull and $pullAll, which only remove elements.
func (ap *applier) cull(t *target, cur *value) (action, value, error) {
	o := t.o
	if cur == nil {
		return keep, value{}, nil
	}
	if !cur.isArr() {
		if o.kind == opPop {
			return keep, value{}, mongoerr.New(mongoerr.TypeMismatch,
				"Path '%s' contains an element of non-array type '%s'", strings.Join(t.path, "."), typeName(cur.typ()))
		}
		return keep, value{}, mongoerr.New(mongoerr.BadValue, "Cannot apply $pull to a non-array value")
	}
	a, err := cur.asArr()
	if err != nil {
		return keep, value{}, err
	}
	if len(a.elems) == 0 {
		return keep, value{}, nil
	}
	if o.kind == opPop {
		res := append([]value(nil), a.elems...)
		if o.pop > 0 {
			res = res[:len(res)-1]
		} else {
			res = res[1:]
		}
		return replace, value{arr: &arrNode{elems: res}}, nil
	}
	res := make([]value, 0, len(a.elems))
	for i := range a.elems {
		e := a.elems[i].rawValue()
		drop := false
		if o.kind == opPull {
			drop = o.pull.match(e)
		} else {
			for _, x := range o.each {
				if keys.Compare(e, x) == 0 {
					drop = true
					break
				}
			}
		}
		if !drop {
			res = append(res, rawVal(e))
		}
	}
	if len(res) == len(a.elems) {
		return keep, value{}, nil
	}
	return replace, value{arr: &arrNode{elems: res}}, nil
}

// checkDepth refuses a value that would sit deeper than MongoDB stores: a
// top-level field is at level 1, and no element may be below level 100.
func checkDepth(path []string, v *value) error {
	if len(path)+valueDepth(v, maxPathDepth+1-len(path)) > maxPathDepth {
		return mongoerr.New(mongoerr.Overflow, "Document exceeds maximum nesting depth of %d", maxPathDepth)
	}
	return nil
}

// valueDepth returns how many levels v nests below itself (0 for a
// scalar), counting no further than budget.
func valueDepth(v *value, budget int) int {
	if budget <= 0 {
		return 0
	}
	deepest := 0
	switch {
	case v.doc != nil:
		for i := range v.doc.fields {
			deepest = max(deepest, 1+valueDepth(&v.doc.fields[i].val, budget-1))
		}
	case v.arr != nil:
		for i := range v.arr.elems {
			deepest = max(deepest, 1+valueDepth(&v.arr.elems[i], budget-1))
		}
	default:
		deepest = rawDepth(v.raw, budget)
	}
	return deepest
}

// rawDepth is valueDepth for raw BSON.
func rawDepth(v bson.RawValue, budget int) int {
	if budget <= 0 || (v.Type != bson.TypeEmbeddedDocument && v.Type != bson.TypeArray) {
		return 0
	}
	it, err := iterate(v.Value)
	if err != nil {
		return 0
	}
	deepest := 0
	for deepest <= budget {
		_, c, ok, err := it.next()
		if err != nil || !ok {
			break
		}
		deepest = max(deepest, 1+rawDepth(c, budget-1))
	}
	return deepest
}

// nowOrDefault returns the time $currentDate writes.
func nowOrDefault(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
