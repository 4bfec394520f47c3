// Package update owns MongoDB's update language: parsing an update document
// (a replacement or update operators with arrayFilters), applying it to one
// document, and building the document an upsert inserts.
//
// Parse validates everything that can be validated without a document
// (unknown operators, argument types, conflicting paths, arrayFilters), so a
// bad update fails before any document is touched. Apply works on a copy:
// only the parts of the document an update walks through are decoded, and
// the input is never mutated. Errors carry MongoDB's codes and messages.
//
// This package must never read or write storage, and never decide which
// documents an update targets: callers match documents (pkg/query) and pass
// the match position for the positional $ operator.
package update

import (
	"math"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// maxPathDepth is MongoDB's maximum nesting depth for stored documents; an
// update path deeper than that could only build a document MongoDB refuses.
const maxPathDepth = 100

// Options are the update command's options that change how the update
// document is read.
type Options struct {
	// ArrayFilters are the filters for $[<identifier>] path components.
	ArrayFilters []bson.Raw
}

// ApplyContext is what Apply needs to know about the document's situation.
type ApplyContext struct {
	// Now is the time $currentDate writes as a date (time.Now() when zero).
	Now time.Time
	// Timestamp is what $currentDate {$type: "timestamp"} writes; when zero,
	// Timestamp(Now in seconds, 1). Callers with a logical clock (MongoDB
	// takes the value from its oplog clock) pass its next tick.
	Timestamp bson.Timestamp
	// Inserting is true when the document is being inserted by an upsert:
	// $setOnInsert applies and $-prefixed top-level fields are allowed.
	Inserting bool
	// MatchPos is the array index the query matched, for the positional $
	// operator (from query.Filter.MatchDetails); -1 when there is none.
	MatchPos int
}

// Update is a parsed update. It is immutable after Parse and safe for
// concurrent use by multiple goroutines.
type Update struct {
	replacement bson.Raw // set for replacement-style updates
	isRepl      bool
	ops         []*op
	filters     map[string]*query.Filter
	touchesID   bool
}

// IsReplacement reports whether the update replaces the whole document.
func (u *Update) IsReplacement() bool { return u.isRepl }

// Replacement returns the replacement document of a replacement update.
func (u *Update) Replacement() bson.Raw { return u.replacement }

type opKind int

const (
	opSet opKind = iota
	opUnset
	opInc
	opMul
	opMin
	opMax
	opRename
	opCurrentDate
	opSetOnInsert
	opPush
	opAddToSet
	opPop
	opPull
	opPullAll
)

var opNames = map[string]opKind{
	"$set":         opSet,
	"$unset":       opUnset,
	"$inc":         opInc,
	"$mul":         opMul,
	"$min":         opMin,
	"$max":         opMax,
	"$rename":      opRename,
	"$currentDate": opCurrentDate,
	"$setOnInsert": opSetOnInsert,
	"$push":        opPush,
	"$addToSet":    opAddToSet,
	"$pop":         opPop,
	"$pull":        opPull,
	"$pullAll":     opPullAll,
}

func (k opKind) String() string {
	for name, kk := range opNames {
		if kk == k {
			return name
		}
	}
	return "$unknown"
}

// allowsCreation reports whether the operator creates a missing path
// (false for operators that only remove or shrink).
func (k opKind) allowsCreation() bool {
	switch k {
	case opUnset, opPop, opPull, opPullAll:
		return false
	}
	return true
}

// op is one operator applied to one path.
type op struct {
	kind    opKind
	path    []string
	pathStr string
	arg     bson.RawValue

	// $rename destination.
	to    []string
	toStr string

	// $push / $addToSet values ($each or the single argument).
	each        []bson.RawValue
	hasSlice    bool
	slice       int64
	sort        *pushSort
	hasPosition bool
	position    int64

	// $currentDate
	timestamp bool
	// $pop: 1 removes the last element, -1 the first.
	pop int
	// $pull
	pull *pullMatcher
}

// Parse parses and validates an update document: update operators, or a
// replacement document when its first field is not an operator.
func Parse(update bson.Raw, opts Options) (*Update, error) {
	if err := validDoc(update); err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.FailedToParse, "update is not a valid BSON document: %v", err)
	}
	u := &Update{}
	if err := u.parseArrayFilters(opts.ArrayFilters); err != nil {
		return nil, err
	}
	elems, err := update.Elements()
	if err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.FailedToParse, "update is not a valid BSON document: %v", err)
	}
	if len(elems) == 0 || !strings.HasPrefix(elems[0].Key(), "$") {
		if err := u.parseReplacement(update, elems); err != nil {
			return nil, err
		}
	} else {
		if err := u.parseOperators(elems); err != nil {
			return nil, err
		}
	}
	if u.isRepl {
		// MongoDB parses arrayFilters but only checks that an operator
		// update uses them.
		return u, nil
	}
	used := make(map[string]bool)
	for _, o := range u.ops {
		for _, c := range o.path {
			if id, ok := filterIdentifier(c); ok && id != "" {
				used[id] = true
			}
		}
	}
	for _, f := range opts.ArrayFilters {
		id, _, _ := arrayFilterID(f)
		if !used[id] {
			return nil, mongoerr.New(mongoerr.FailedToParse,
				"The array filter for identifier '%s' was not used in the update %s", id, formatDoc(update))
		}
	}
	return u, nil
}

func (u *Update) parseReplacement(update bson.Raw, elems []bson.RawElement) error {
	for _, e := range elems {
		if strings.HasPrefix(e.Key(), "$") {
			return mongoerr.New(mongoerr.DollarPrefixedFieldName, "%s", dollarFieldMessage(e.Key(), e.Key()))
		}
	}
	u.isRepl = true
	u.replacement = update
	return nil
}

func (u *Update) parseOperators(elems []bson.RawElement) error {
	tr := &conflictTrie{}
	for _, e := range elems {
		name := e.Key()
		kind, ok := opNames[name]
		if !ok {
			return mongoerr.New(mongoerr.FailedToParse,
				"Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", name)
		}
		v := e.Value()
		if v.Type != bson.TypeEmbeddedDocument {
			return mongoerr.New(mongoerr.FailedToParse,
				"Modifiers operate on fields but we found type %s instead. For example: {$mod: {<field>: ...}} not {%s: %s}",
				typeName(v.Type), name, formatValue(v))
		}
		fields, err := bson.Raw(v.Value).Elements()
		if err != nil {
			return mongoerr.Wrap(err, mongoerr.FailedToParse, "invalid BSON in %s: %v", name, err)
		}
		for _, f := range fields {
			o, err := u.parseOp(kind, f.Key(), f.Value())
			if err != nil {
				return err
			}
			if err := tr.add(o.path, o.pathStr); err != nil {
				return err
			}
			if kind == opRename {
				if err := tr.add(o.to, o.toStr); err != nil {
					return err
				}
			}
			if o.path[0] == "_id" || (kind == opRename && o.to[0] == "_id") {
				u.touchesID = true
			}
			u.ops = append(u.ops, o)
		}
	}
	return nil
}

// parsePath splits and validates an update path.
func (u *Update) parsePath(p string) ([]string, error) {
	if p == "" {
		return nil, mongoerr.New(mongoerr.EmptyFieldName, "An empty update path is not valid.")
	}
	comps := strings.Split(p, ".")
	if len(comps) > maxPathDepth {
		return nil, mongoerr.New(mongoerr.Overflow, "Document exceeds maximum nesting depth of %d", maxPathDepth)
	}
	positional := 0
	for i, c := range comps {
		if c == "" {
			return nil, mongoerr.New(mongoerr.EmptyFieldName,
				"The update path '%s' contains an empty field name, which is not allowed.", p)
		}
		if c == "$" {
			positional++
			if i == 0 {
				return nil, mongoerr.New(mongoerr.BadValue,
					"Cannot have positional (i.e. '$') element in the first position in path '%s'", p)
			}
			continue
		}
		id, isFilter := filterIdentifier(c)
		if !isFilter {
			continue
		}
		if i == 0 {
			return nil, mongoerr.New(mongoerr.BadValue,
				"Cannot have array filter identifier (i.e. '$[<id>]') element in the first position in path '%s'", p)
		}
		if id != "" && u.filters[id] == nil {
			return nil, mongoerr.New(mongoerr.BadValue,
				"No array filter found for identifier '%s' in path '%s'", id, p)
		}
	}
	if positional > 1 {
		return nil, mongoerr.New(mongoerr.BadValue,
			"Too many positional (i.e. '$') elements found in path '%s'", p)
	}
	return comps, nil
}

// filterIdentifier recognises "$[]" (id "") and "$[id]".
func filterIdentifier(c string) (string, bool) {
	if len(c) >= 3 && strings.HasPrefix(c, "$[") && strings.HasSuffix(c, "]") {
		return c[2 : len(c)-1], true
	}
	return "", false
}

func isDynamic(comps []string) bool {
	for _, c := range comps {
		if c == "$" {
			return true
		}
		if _, ok := filterIdentifier(c); ok {
			return true
		}
	}
	return false
}

func (u *Update) parseOp(kind opKind, path string, arg bson.RawValue) (*op, error) {
	comps, err := u.parsePath(path)
	if err != nil {
		return nil, err
	}
	o := &op{kind: kind, path: comps, pathStr: path, arg: arg}
	switch kind {
	case opSet, opSetOnInsert, opUnset, opMin, opMax:
	case opInc, opMul:
		if !isNumber(arg.Type) {
			verb := "increment"
			if kind == opMul {
				verb = "multiply"
			}
			return nil, mongoerr.New(mongoerr.TypeMismatch,
				"Cannot %s with non-numeric argument: {%s}", verb, formatElem(path, arg))
		}
	case opCurrentDate:
		if err := o.parseCurrentDate(); err != nil {
			return nil, err
		}
	case opRename:
		if err := u.parseRename(o); err != nil {
			return nil, err
		}
	case opPush:
		if err := o.parsePush(); err != nil {
			return nil, err
		}
	case opAddToSet:
		if err := o.parseAddToSet(); err != nil {
			return nil, err
		}
	case opPop:
		if !isNumber(arg.Type) {
			return nil, mongoerr.New(mongoerr.FailedToParse, "Expected a number in: %s", formatElem(path, arg))
		}
		f := asFloatAny(arg)
		switch f {
		case 1:
			o.pop = 1
		case -1:
			o.pop = -1
		default:
			return nil, mongoerr.New(mongoerr.FailedToParse, "$pop expects 1 or -1, found: %s", formatValue(arg))
		}
	case opPull:
		m, err := newPullMatcher(arg)
		if err != nil {
			return nil, err
		}
		o.pull = m
	case opPullAll:
		if arg.Type != bson.TypeArray {
			return nil, mongoerr.New(mongoerr.BadValue,
				"$pullAll requires an array argument but was given a %s", typeName(arg.Type))
		}
		o.each = rawElems(arg)
	}
	return o, nil
}

// asFloatAny converts any numeric value to float64 (decimals through
// their string form).
func asFloatAny(v bson.RawValue) float64 {
	if v.Type == bson.TypeDecimal128 {
		f, err := strconv.ParseFloat(v.Decimal128().String(), 64)
		if err != nil {
			return math.NaN()
		}
		return f
	}
	return asFloat(v)
}

func (o *op) parseCurrentDate() error {
	switch o.arg.Type {
	case bson.TypeBoolean:
		return nil
	case bson.TypeEmbeddedDocument:
		elems, err := bson.Raw(o.arg.Value).Elements()
		if err != nil {
			return mongoerr.New(mongoerr.BadValue, "invalid $currentDate argument")
		}
		found := false
		for _, e := range elems {
			if e.Key() != "$type" {
				return mongoerr.New(mongoerr.BadValue, "Unrecognized $currentDate option: %s", e.Key())
			}
			switch s, _ := e.Value().StringValueOK(); s {
			case "date":
				o.timestamp, found = false, true
			case "timestamp":
				o.timestamp, found = true, true
			}
		}
		if !found {
			return mongoerr.New(mongoerr.BadValue,
				"The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}")
		}
		return nil
	}
	return mongoerr.New(mongoerr.BadValue,
		"%s is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({$type: 'timestamp/date'}).",
		typeName(o.arg.Type))
}

func (u *Update) parseRename(o *op) error {
	to, ok := o.arg.StringValueOK()
	if !ok {
		return mongoerr.New(mongoerr.BadValue, "The 'to' field for $rename must be a string: %s", formatElem(o.pathStr, o.arg))
	}
	if strings.IndexByte(to, 0) >= 0 {
		// Field names are C strings: a NUL would end the name early.
		return mongoerr.New(mongoerr.BadValue, "The 'to' field for $rename cannot contain an embedded null byte")
	}
	if to == o.pathStr {
		return mongoerr.New(mongoerr.BadValue, "The source and target field for $rename must differ: %s", formatElem(o.pathStr, o.arg))
	}
	comps, err := u.parsePath(to)
	if err != nil {
		return err
	}
	if isDynamic(o.path) {
		return mongoerr.New(mongoerr.BadValue, "The source field for $rename may not be dynamic: %s", o.pathStr)
	}
	if isDynamic(comps) {
		return mongoerr.New(mongoerr.BadValue, "The destination field for $rename may not be dynamic: %s", to)
	}
	if isPrefix(o.path, comps) || isPrefix(comps, o.path) {
		return mongoerr.New(mongoerr.BadValue,
			"The source and target field for $rename must not be on the same path: %s", formatElem(o.pathStr, o.arg))
	}
	o.to, o.toStr = comps, to
	return nil
}

func isPrefix(p, q []string) bool {
	if len(p) > len(q) {
		return false
	}
	for i := range p {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// conflictTrie detects update paths that overlap: MongoDB refuses an update
// where one path is a prefix of (or equal to) another, and one where the
// same field would be both an array walked by $[...] and a document.
type conflictTrie struct {
	children map[string]*conflictTrie
	terminal bool
	// kind of the children: 0 none yet, 1 field names, 2 array filters.
	kind int
}

func (t *conflictTrie) add(comps []string, pathStr string) error {
	conflict := func(at int) error {
		return mongoerr.New(mongoerr.ConflictingUpdateOperators,
			"Updating the path '%s' would create a conflict at '%s'", pathStr, strings.Join(comps[:at], "."))
	}
	n := t
	for i, c := range comps {
		if n.terminal {
			return conflict(i)
		}
		kind := 1
		if _, ok := filterIdentifier(c); ok {
			kind = 2
		}
		if n.kind != 0 && n.kind != kind && i > 0 {
			return conflict(i)
		}
		n.kind = kind
		if n.children == nil {
			n.children = make(map[string]*conflictTrie)
		}
		next := n.children[c]
		if next == nil {
			next = &conflictTrie{}
			n.children[c] = next
		}
		n = next
	}
	if n.terminal || len(n.children) > 0 {
		return conflict(len(comps))
	}
	n.terminal = true
	return nil
}

// dollarFieldMessage is MongoDB's message for a $-prefixed top-level field
// in a stored document.
func dollarFieldMessage(name, full string) string {
	return "The dollar ($) prefixed field '" + name + "' in '" + full +
		"' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."
}

// validDoc checks that b is exactly one valid BSON document (no bytes
// after it).
func validDoc(b []byte) error {
	if err := bson.Raw(b).Validate(); err != nil {
		return err
	}
	if l, _, ok := bsoncore.ReadLength(b); !ok || int(l) != len(b) {
		return errBadBSON
	}
	return nil
}
