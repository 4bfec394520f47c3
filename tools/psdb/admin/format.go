package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Result is what an operation returns: it renders itself as an aligned
// table for people, and marshals with encoding/json for programs.
type Result interface {
	WriteTable(w io.Writer) error
}

// WriteJSON writes v as one indented JSON document and a newline.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Doc is a BSON document of a result. Its JSON form is MongoDB's relaxed
// extended JSON ({"$minKey": 1}, {"$oid": ...}); its String form is the
// shell's compact notation ({ x: MinKey }).
type Doc bson.Raw

// MarshalJSON implements json.Marshaler.
func (d Doc) MarshalJSON() ([]byte, error) {
	if len(d) == 0 {
		return []byte("null"), nil
	}
	return bson.MarshalExtJSON(bson.Raw(d), false, false)
}

func (d Doc) String() string {
	if len(d) == 0 {
		return ""
	}
	return Format(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d})
}

// Format renders a BSON value in the shell's compact notation: documents
// as { k: v }, MinKey and MaxKey by name, strings quoted, ObjectId(...),
// dates in RFC 3339, and anything else as relaxed extended JSON.
func Format(v bson.RawValue) string {
	var b strings.Builder
	format(&b, v)
	return b.String()
}

func format(b *strings.Builder, v bson.RawValue) {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		elems, err := v.Document().Elements()
		if err != nil {
			b.WriteString("<invalid document>")
			return
		}
		if len(elems) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{ ")
		for i, e := range elems {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(formatKey(e.Key()))
			b.WriteString(": ")
			format(b, e.Value())
		}
		b.WriteString(" }")
	case bson.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			b.WriteString("<invalid array>")
			return
		}
		b.WriteString("[")
		for i, e := range vals {
			if i > 0 {
				b.WriteString(", ")
			}
			format(b, e)
		}
		b.WriteString("]")
	case bson.TypeMinKey:
		b.WriteString("MinKey")
	case bson.TypeMaxKey:
		b.WriteString("MaxKey")
	case bson.TypeString:
		b.WriteString(strconv.Quote(v.StringValue()))
	case bson.TypeInt32:
		b.WriteString(strconv.FormatInt(int64(v.Int32()), 10))
	case bson.TypeInt64:
		b.WriteString(strconv.FormatInt(v.Int64(), 10))
	case bson.TypeDouble:
		b.WriteString(strconv.FormatFloat(v.Double(), 'g', -1, 64))
	case bson.TypeBoolean:
		b.WriteString(strconv.FormatBool(v.Boolean()))
	case bson.TypeNull:
		b.WriteString("null")
	case bson.TypeObjectID:
		fmt.Fprintf(b, "ObjectId(%q)", v.ObjectID().Hex())
	case bson.TypeDateTime:
		b.WriteString(time.UnixMilli(v.DateTime()).UTC().Format(time.RFC3339Nano))
	case bson.TypeTimestamp:
		t, i := v.Timestamp()
		fmt.Fprintf(b, "Timestamp(%d, %d)", t, i)
	default:
		b.WriteString(v.String()) // relaxed extended JSON
	}
}

// formatKey leaves identifier-like keys bare and quotes the others.
func formatKey(k string) string {
	if k == "" {
		return `""`
	}
	for i, r := range k {
		if r == '_' || r == '$' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '.') {
			continue
		}
		return strconv.Quote(k)
	}
	return k
}

// ParseDoc parses a document given on the command line as relaxed
// extended JSON (bson.UnmarshalExtJSON). Keys may be left unquoted, as in
// the shell ({x: 1, "a.b": {"$minKey": 1}}), and strings may use single
// quotes; MinKey and MaxKey may be written bare.
func ParseDoc(s string) (bson.Raw, error) {
	src := strings.TrimSpace(s)
	if src == "" {
		return nil, fmt.Errorf("empty document: want e.g. '{x: 1}'")
	}
	js, err := shellToJSON(src)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", s, err)
	}
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(js), false, &raw); err != nil {
		return nil, fmt.Errorf("parse %q as a JSON document: %w", s, err)
	}
	return raw, nil
}

// shellToJSON quotes bare keys, turns single-quoted strings into JSON
// strings, and bare MinKey/MaxKey into their extended JSON forms. It does
// not check the JSON itself; UnmarshalExtJSON does.
func shellToJSON(s string) (string, error) {
	var b strings.Builder
	prev := byte(0) // last non-space byte written outside strings
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'':
			j, str, err := readString(s, i)
			if err != nil {
				return "", err
			}
			b.WriteString(strconv.Quote(str))
			i, prev = j, '"'
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r') {
				k++
			}
			switch {
			case (prev == '{' || prev == ',') && k < len(s) && s[k] == ':':
				b.WriteString(strconv.Quote(word))
			case word == "MinKey":
				b.WriteString(`{"$minKey": 1}`)
			case word == "MaxKey":
				b.WriteString(`{"$maxKey": 1}`)
			default:
				b.WriteString(word) // true, false, null, numbers' exponents...
			}
			i, prev = j, 'a'
		default:
			b.WriteByte(c)
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				prev = c
			}
			i++
		}
	}
	return b.String(), nil
}

// readString reads the quoted string starting at s[i] and returns the
// index after it and its value.
func readString(s string, i int) (int, string, error) {
	q := s[i]
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == q:
			return j + 1, b.String(), nil
		case c == '\\' && j+1 < len(s):
			j++
			switch e := s[j]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'u':
				if j+4 >= len(s) {
					return 0, "", fmt.Errorf("bad \\u escape at offset %d", j)
				}
				r, err := strconv.ParseUint(s[j+1:j+5], 16, 32)
				if err != nil {
					return 0, "", fmt.Errorf("bad \\u escape at offset %d", j)
				}
				b.WriteRune(rune(r))
				j += 4
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return 0, "", fmt.Errorf("unterminated string starting at offset %d", i)
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '.' }

// table is a tabwriter with the package's layout.
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// row writes tab-separated cells and a newline.
func row(tw *tabwriter.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c)
	}
	fmt.Fprint(tw, "\n")
}

// orDash shows an empty cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// replyFields are the reply fields that are not the command's answer.
var replyFields = map[string]bool{"ok": true, "$clusterTime": true, "operationTime": true}

// Fields is a reply rendered generically: every field the server sent
// (but ok, $clusterTime and operationTime), in its order, so that fields
// added to a command later show without a change here.
type Fields struct{ Doc }

// NewFields keeps the answer's fields of reply.
func NewFields(reply bson.Raw) (Fields, error) {
	elems, err := reply.Elements()
	if err != nil {
		return Fields{}, fmt.Errorf("decode reply: %w", err)
	}
	d := bson.D{}
	for _, e := range elems {
		if !replyFields[e.Key()] {
			d = append(d, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		return Fields{}, fmt.Errorf("encode reply fields: %w", err)
	}
	return Fields{Doc(raw)}, nil
}

// Lookup returns a field's value (zero RawValue when absent).
func (f Fields) Lookup(key string) bson.RawValue {
	if len(f.Doc) == 0 {
		return bson.RawValue{}
	}
	v, _ := bson.Raw(f.Doc).LookupErr(key)
	return v
}

// WriteTable writes one FIELD VALUE row per field: strings unquoted,
// an embedded document as one row per field under a dotted name, an
// array of documents (in-flight migrations, recent errors) as a count
// and one indented row per item.
func (f Fields) WriteTable(w io.Writer) error {
	tw := table(w)
	row(tw, "FIELD", "VALUE")
	if len(f.Doc) > 0 {
		fieldRows(tw, "", bson.Raw(f.Doc))
	}
	return tw.Flush()
}

func fieldRows(tw *tabwriter.Writer, prefix string, doc bson.Raw) {
	elems, err := doc.Elements()
	if err != nil {
		row(tw, prefix+"<invalid>", err)
		return
	}
	for _, e := range elems {
		key, v := prefix+e.Key(), e.Value()
		switch v.Type {
		case bson.TypeString:
			row(tw, key, v.StringValue())
			continue
		case bson.TypeEmbeddedDocument:
			if sub := v.Document(); len(sub) > 5 {
				fieldRows(tw, key+".", sub)
				continue
			}
		case bson.TypeArray:
			vals, _ := v.Array().Values()
			if len(vals) > 0 && vals[0].Type == bson.TypeEmbeddedDocument {
				row(tw, key, fmt.Sprintf("(%d)", len(vals)))
				for _, item := range vals {
					row(tw, "  -", Format(item))
				}
				continue
			}
		}
		row(tw, key, Format(v))
	}
}
