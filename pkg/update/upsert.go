package update

import (
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// UpsertDocument builds the document an upsert inserts when its filter
// matched nothing.
//
// For an operator update the new document is seeded with the filter's
// equality conditions (field: value, field: {$eq: value}, and those inside
// $and; dotted paths become nested documents; $in, ranges, $or and the like
// seed nothing), then the update is applied with Inserting set, so
// $setOnInsert applies. For a replacement the new document is the
// replacement, with the filter's _id when the replacement has none. An _id
// is generated (an ObjectID) when the result has none, and _id is moved to
// the front.
//
// Seeded fields are added in the order of their dotted paths as strings,
// as MongoDB adds them.
func UpsertDocument(filter bson.Raw, u *Update, ac ApplyContext) (bson.Raw, error) {
	if len(filter) == 0 {
		filter = bson.Raw{5, 0, 0, 0, 0}
	}
	if err := validDoc(filter); err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.FailedToParse, "filter is not a valid BSON document: %v", err)
	}
	eqs, err := equalityFields(filter)
	if err != nil {
		return nil, err
	}
	var doc bson.Raw
	if u.isRepl {
		nd, err := loadDoc(u.replacement)
		if err != nil {
			return nil, err
		}
		if id, ok := eqs["_id"]; ok {
			if cur := nd.get("_id"); cur != nil && !sameValue(cur.rawValue(), id) {
				return nil, mongoerr.New(mongoerr.ImmutableField,
					"After applying the update, the (immutable) field '_id' was found to have been altered to %s",
					formatElem("_id", cur.rawValue()))
			} else if cur == nil {
				nd.set("_id", rawVal(id))
			}
		}
		doc = nd.appendTo(nil)
	} else {
		seed, err := seedDocument(eqs)
		if err != nil {
			return nil, err
		}
		ac.Inserting = true
		ac.MatchPos = -1
		doc, _, err = u.Apply(seed, ac)
		if err != nil {
			return nil, err
		}
	}
	return idFirst(doc)
}

// idFirst moves _id to the front, generating one when absent, and checks
// its type.
func idFirst(doc bson.Raw) (bson.Raw, error) {
	nd, err := loadDoc(doc)
	if err != nil {
		return nil, err
	}
	i := nd.index("_id")
	var id value
	if i < 0 {
		oid := bson.NewObjectID()
		id = rawVal(bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]})
	} else {
		id = nd.fields[i].val
		switch id.typ() {
		case bson.TypeArray, bson.TypeRegex, bson.TypeUndefined:
			return nil, mongoerr.New(mongoerr.InvalidIdField, "The '_id' value cannot be of type %s", typeName(id.typ()))
		}
		if i == 0 {
			return doc, nil
		}
		nd.fields = append(nd.fields[:i], nd.fields[i+1:]...)
	}
	nd.byName = nil
	nd.fields = append([]field{{name: "_id", val: id}}, nd.fields...)
	out := nd.appendTo(nil)
	if len(out) > maxDocSize {
		return nil, mongoerr.New(mongoerr.BSONObjectTooLarge, "Resulting document after update is larger than %d", maxDocSize)
	}
	return out, nil
}

// equalityFields collects the filter's equality conditions by path.
func equalityFields(filter bson.Raw) (map[string]bson.RawValue, error) {
	out := make(map[string]bson.RawValue)
	var walkFilter func(f bson.Raw, depth int) error
	walkFilter = func(f bson.Raw, depth int) error {
		if depth > maxPathDepth {
			return mongoerr.New(mongoerr.BadValue, "filter exceeds maximum nesting depth of %d", maxPathDepth)
		}
		elems, err := f.Elements()
		if err != nil {
			return mongoerr.Wrap(err, mongoerr.FailedToParse, "invalid filter: %v", err)
		}
		for _, e := range elems {
			k, v := e.Key(), e.Value()
			// $and (and a $or of one clause, which MongoDB's canonical
			// form collapses into that clause) contribute their equalities.
			if k == "$and" || (k == "$or" && v.Type == bson.TypeArray && len(rawElems(v)) == 1) {
				if v.Type != bson.TypeArray {
					continue
				}
				for _, sub := range rawElems(v) {
					if sub.Type == bson.TypeEmbeddedDocument {
						if err := walkFilter(sub.Value, depth+1); err != nil {
							return err
						}
					}
				}
				continue
			}
			if strings.HasPrefix(k, "$") || k == "" {
				continue
			}
			if hasDollarComp(k) {
				continue
			}
			for _, eq := range equalityValues(v) {
				if _, dup := out[k]; dup {
					return mongoerr.New(mongoerr.NotSingleValueField,
						"cannot infer query fields to set, path '%s' is matched twice", k)
				}
				out[k] = eq
			}
		}
		return nil
	}
	if err := walkFilter(filter, 0); err != nil {
		return nil, err
	}
	return out, nil
}

func hasDollarComp(path string) bool {
	for _, c := range strings.Split(path, ".") {
		if c == "" || strings.HasPrefix(c, "$") {
			return true
		}
	}
	return false
}

// equalityValues returns the values a filter condition pins a field to, as
// MongoDB's canonical query sees them: a plain value, $eq, a one-element
// $in, and each non-regex element of $all (which MongoDB parses as an $and
// of equalities). Regexes and other operators pin nothing.
func equalityValues(v bson.RawValue) []bson.RawValue {
	switch v.Type {
	case bson.TypeRegex:
		return nil
	case bson.TypeEmbeddedDocument:
		elems, err := bson.Raw(v.Value).Elements()
		if err != nil || len(elems) == 0 || !strings.HasPrefix(elems[0].Key(), "$") {
			return []bson.RawValue{v}
		}
		var out []bson.RawValue
		for _, e := range elems {
			ev := e.Value()
			switch e.Key() {
			case "$eq":
				if ev.Type != bson.TypeRegex {
					out = append(out, ev)
				}
			case "$in":
				if ev.Type == bson.TypeArray {
					if in := rawElems(ev); len(in) == 1 && in[0].Type != bson.TypeRegex {
						out = append(out, in[0])
					}
				}
			case "$all":
				if ev.Type != bson.TypeArray {
					continue
				}
				all := rawElems(ev)
				if len(all) > 0 && all[0].Type == bson.TypeEmbeddedDocument {
					if first, _ := bson.Raw(all[0].Value).Elements(); len(first) > 0 && first[0].Key() == "$elemMatch" {
						continue
					}
				}
				for _, a := range all {
					if a.Type != bson.TypeRegex {
						out = append(out, a)
					}
				}
			}
		}
		return out
	}
	return []bson.RawValue{v}
}

// seedDocument builds a document from equality paths, in path order.
func seedDocument(eqs map[string]bson.RawValue) (bson.Raw, error) {
	paths := make([]string, 0, len(eqs))
	for p := range eqs {
		paths = append(paths, p)
	}
	split := make(map[string][]string, len(paths))
	for _, p := range paths {
		split[p] = strings.Split(p, ".")
	}
	// MongoDB keeps the equalities in a map ordered by the dotted path
	// string and adds them in that order.
	sort.Strings(paths)
	for _, p := range paths {
		comps := split[p]
		for n := 1; n < len(comps); n++ {
			if q := strings.Join(comps[:n], "."); eqs[q].Type != 0 {
				return nil, mongoerr.New(mongoerr.NotSingleValueField,
					"cannot infer query fields to set, both paths '%s' and '%s' are matched", p, q)
			}
		}
	}
	root := &docNode{}
	for _, p := range paths {
		comps := split[p]
		d := root
		for _, c := range comps[:len(comps)-1] {
			next := d.get(c)
			if next == nil {
				d.set(c, value{doc: &docNode{}})
				next = d.get(c)
			}
			if next.doc == nil {
				return nil, mongoerr.New(mongoerr.NotSingleValueField,
					"cannot infer query fields to set, path '%s' is matched twice", p)
			}
			d = next.doc
		}
		d.set(comps[len(comps)-1], rawVal(eqs[p]))
	}
	return root.appendTo(nil), nil
}
