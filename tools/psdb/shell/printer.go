package shell

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
)

// The printer formats values as mongosh does (which uses Node's
// util.inspect): objects and arrays on one line when they fit in
// breakLength columns and hold at most compactDepth levels of nested
// objects, otherwise one entry per line indented by two spaces; long
// arrays of short entries grouped in columns; strings single-quoted;
// BSON types by their constructor (ObjectId('...'), ISODate('...'),
// Long('...'), Decimal128('...'), Timestamp({ t, i })).

const (
	breakLength  = 80
	compactDepth = 3
)

// printer formats values of one runtime.
type printer struct {
	conv converter
	vm   *goja.Runtime
	seen map[*goja.Object]bool
}

// Inspect formats v as the REPL prints a result: a top-level string as
// is, anything else as mongosh's inspect.
func (c converter) inspectTop(v goja.Value) string {
	if v != nil {
		if _, isObj := v.(*goja.Object); !isObj {
			if s, ok := v.Export().(string); ok {
				return s
			}
		}
	}
	return c.inspect(v)
}

// inspectValue formats v, strings quoted.
func (c converter) inspect(v goja.Value) string {
	p := &printer{conv: c, vm: c.vm, seen: map[*goja.Object]bool{}}
	s, _ := p.format(v, 0, 0)
	return s
}

var identRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z_0-9]*$`)

// formatKey writes an object key: bare when it is an identifier.
func formatKey(k string) string {
	if identRe.MatchString(k) {
		return k
	}
	return quote(k)
}

// quote is Node's string escaping: single quotes unless the string holds
// one and no double quote.
func quote(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 {
		if strings.IndexByte(s, '"') < 0 {
			q = '"'
		} else if strings.IndexByte(s, '`') < 0 && !strings.Contains(s, "${") {
			q = '`'
		}
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\v':
			b.WriteString(`\v`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// jsNumber formats a number as JavaScript's ToString does.
func (p *printer) jsNumber(f float64) string {
	if f == 0 && math.Signbit(f) {
		return "-0"
	}
	return p.vm.ToValue(f).String()
}

// isoDate is mongosh's date form.
func isoDate(t time.Time) string {
	return "ISODate('" + t.UTC().Format("2006-01-02T15:04:05.000Z07:00") + "')"
}

// format returns v's text at indentation indent (columns) and the number
// of levels of non-empty objects it contains (0 for a scalar).
func (p *printer) format(v goja.Value, indent, level int) (string, int) {
	if v == nil || goja.IsUndefined(v) {
		return "undefined", 0
	}
	if goja.IsNull(v) {
		return "null", 0
	}
	obj, isObj := v.(*goja.Object)
	if !isObj {
		switch x := v.Export().(type) {
		case string:
			return quote(x), 0
		case int64:
			return strconv.FormatInt(x, 10), 0
		case float64:
			return p.jsNumber(x), 0
		case bool:
			return strconv.FormatBool(x), 0
		}
		if _, ok := v.(*goja.Symbol); ok {
			return v.String(), 0
		}
		return v.String(), 0 // BigInt and others
	}
	if s, ok := p.special(obj); ok {
		return s, 0
	}
	if p.seen[obj] {
		return "[Circular]", 0
	}
	p.seen[obj] = true
	defer delete(p.seen, obj)

	var entries []string
	depth := 0
	open, closing := "{", "}"
	isArray := obj.ClassName() == "Array"
	allNumbers := true
	if isArray {
		open, closing = "[", "]"
		n := int(obj.Get("length").ToInteger())
		for i := range n {
			ev := obj.Get(strconv.Itoa(i))
			if _, isNum := ev.Export().(int64); !isNum {
				if _, isF := ev.Export().(float64); !isF || isObject(ev) {
					allNumbers = false
				}
			}
			s, d := p.format(ev, indent+2, level+1)
			depth = max(depth, d)
			entries = append(entries, s)
		}
		for _, k := range obj.Keys() {
			if _, err := strconv.Atoi(k); err == nil {
				continue
			}
			s, d := p.format(obj.Get(k), indent+2, level+1)
			depth = max(depth, d)
			entries = append(entries, formatKey(k)+": "+s)
		}
	} else {
		for _, k := range obj.Keys() {
			s, d := p.format(obj.Get(k), indent+2, level+1)
			depth = max(depth, d)
			entries = append(entries, formatKey(k)+": "+s)
		}
	}
	if len(entries) == 0 {
		return open + closing, 0
	}
	return reduce(entries, open, closing, indent, depth, isArray, allNumbers), depth + 1
}

func isObject(v goja.Value) bool { _, ok := v.(*goja.Object); return ok }

// reduce joins formatted entries on one line or on several, as Node's
// reduceToSingleString does with compact = 3.
func reduce(entries []string, open, closing string, indent, depth int, isArray, numbers bool) string {
	output := entries
	if isArray && len(entries) > 6 {
		output = groupArrayElements(entries, indent, numbers)
	}
	if depth < compactDepth && len(output) == len(entries) {
		start := len(output) + indent + len(open) + 10
		if belowBreakLength(output, start) {
			joined := strings.Join(output, ", ")
			if !strings.Contains(joined, "\n") {
				return open + " " + joined + " " + closing
			}
		}
	}
	ind := "\n" + strings.Repeat(" ", indent)
	return open + ind + "  " + strings.Join(output, ","+ind+"  ") + ind + closing
}

func belowBreakLength(output []string, start int) bool {
	total := len(output) + start
	if total+len(output) > breakLength {
		return false
	}
	for _, s := range output {
		total += utf8.RuneCountInString(s)
		if total > breakLength {
			return false
		}
	}
	return true
}

// groupArrayElements puts the short entries of a long array in aligned
// columns (Node's groupArrayElements).
func groupArrayElements(output []string, indent int, numbers bool) []string {
	for _, s := range output {
		if strings.Contains(s, "\n") {
			return output
		}
	}
	const sep = 2
	total, maxLen := 0, 0
	lens := make([]int, len(output))
	for i, s := range output {
		l := utf8.RuneCountInString(s)
		lens[i] = l
		total += l + sep
		maxLen = max(maxLen, l)
	}
	actualMax := maxLen + sep
	if !(actualMax*3+indent < breakLength && (float64(total)/float64(actualMax) > 5 || maxLen <= 6)) {
		return output
	}
	averageBias := math.Sqrt(float64(actualMax) - float64(total)/float64(len(output)))
	biasedMax := math.Max(float64(actualMax)-3-averageBias, 1)
	columns := int(math.Min(math.Min(math.Round(math.Sqrt(2.5*biasedMax*float64(len(output)))/biasedMax),
		math.Floor(float64(breakLength-indent)/float64(actualMax))), math.Min(compactDepth*4, 15)))
	if columns <= 1 {
		return output
	}
	maxLine := make([]int, columns)
	for i := range columns {
		w := 0
		for j := i; j < len(output); j += columns {
			w = max(w, lens[j])
		}
		maxLine[i] = w + sep
	}
	var tmp []string
	for i := 0; i < len(output); i += columns {
		end := min(i+columns, len(output))
		var b strings.Builder
		j := i
		for ; j < end-1; j++ {
			cell := output[j] + ", "
			pad := maxLine[j-i] - lens[j] - sep
			if numbers {
				b.WriteString(strings.Repeat(" ", max(pad, 0)) + cell)
			} else {
				b.WriteString(cell + strings.Repeat(" ", max(pad, 0)))
			}
		}
		if numbers {
			b.WriteString(strings.Repeat(" ", max(maxLine[j-i]-sep-lens[j], 0)) + output[j])
		} else {
			b.WriteString(output[j])
		}
		tmp = append(tmp, b.String())
	}
	return tmp
}

// special formats the objects that are not plain containers: BSON host
// objects, dates, regular expressions, functions, errors, db and
// collection handles.
func (p *printer) special(obj *goja.Object) (string, bool) {
	if h, ok := p.conv.reg[obj]; ok {
		switch x := h.(type) {
		case *dbObject:
			return x.name, true
		case *collObject:
			return x.db + "." + x.coll, true
		}
	}
	switch obj.ClassName() {
	case "Date":
		t, ok := obj.Export().(time.Time)
		if !ok || obj.Get("getTime") == nil {
			return "Invalid Date", true
		}
		if ms := obj.ToNumber().ToFloat(); math.IsNaN(ms) {
			return "Invalid Date", true
		}
		return isoDate(t), true
	case "RegExp":
		return obj.String(), true
	case "Function":
		name := obj.Get("name")
		if name == nil || name.String() == "" {
			return "[Function (anonymous)]", true
		}
		return "[Function: " + name.String() + "]", true
	case "Error":
		return errorText(obj), true
	case "Number", "String", "Boolean":
		return "[" + obj.ClassName() + ": " + p.conv.inspect(p.vm.ToValue(obj.Export())) + "]", true
	}
	hv, _ := p.conv.hostValue(obj)
	switch x := hv.(type) {
	case *ObjectID:
		return "ObjectId('" + x.id.Hex() + "')", true
	case *Long:
		return "Long('" + strconv.FormatInt(x.v, 10) + "')", true
	case *Int32:
		return "Int32(" + strconv.Itoa(int(x.v)) + ")", true
	case *Decimal:
		return "Decimal128('" + x.v.String() + "')", true
	case *Timestamp:
		return x.ToString(), true
	case *Binary:
		if x.sub == 4 && len(x.data) == 16 {
			return "UUID('" + uuidString(x.data) + "')", true
		}
		return fmt.Sprintf("Binary.createFromBase64('%s', %d)", x.Base64(), x.sub), true
	case *MinKey:
		return "MinKey()", true
	case *MaxKey:
		return "MaxKey()", true
	case *Regex:
		return "BSONRegExp(" + quote(x.Pattern) + ", " + quote(x.Options) + ")", true
	case *Code:
		return "Code(" + quote(x.Code) + ")", true
	case *dbObject:
		return x.name, true
	case *collObject:
		return x.db + "." + x.coll, true
	case *cursorHandle:
		return "Cursor(" + x.c.describe() + ")", true
	case *statusReport:
		return x.format(p), true
	}
	return "", false
}

// errorText is an error object as the shell reports it:
// "MongoServerError[CodeName]: message" for a server error, else
// "Name: message".
func errorText(obj *goja.Object) string {
	name, msg := "Error", ""
	if v := obj.Get("name"); v != nil && !goja.IsUndefined(v) {
		name = v.String()
	}
	if v := obj.Get("message"); v != nil && !goja.IsUndefined(v) {
		msg = v.String()
	}
	if name == "SyntaxError" {
		return syntaxErrorText(msg)
	}
	if v := obj.Get("codeName"); v != nil && !goja.IsUndefined(v) && !goja.IsNull(v) && v.String() != "" {
		name += "[" + v.String() + "]"
	}
	if msg == "" {
		return name
	}
	return name + ": " + msg
}
