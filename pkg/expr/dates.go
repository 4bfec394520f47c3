package expr

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// datePart is $year, $month, ... : one component of a date (or timestamp or
// ObjectId) in UTC or the given timezone.
type datePart struct {
	name     string
	date     Expr
	timezone Expr
}

func parseDatePart(p *parser, name string, arg bson.RawValue) (Expr, error) {
	d := &datePart{name: name}
	if arg.Type == bson.TypeEmbeddedDocument {
		elems, err := Elems(arg.Value)
		if err != nil {
			return nil, err
		}
		if len(elems) > 0 && !strings.HasPrefix(elems[0].Key, "$") {
			for _, el := range elems {
				e, err := p.parse(el.Value)
				if err != nil {
					return nil, err
				}
				switch el.Key {
				case "date":
					d.date = e
				case "timezone":
					d.timezone = e
				default:
					return nil, mongoerr.New(40535, "unrecognized option to %s: \"%s\". Only 'date' and 'timezone' are allowed.", name, el.Key)
				}
			}
			if d.date == nil {
				return nil, mongoerr.New(40539, "missing 'date' argument to %s, provided: %s", name, arg.String())
			}
			return d, nil
		}
	}
	args, err := p.argList(arg)
	if err != nil {
		return nil, err
	}
	if err := checkArity(name, len(args), 1, 1); err != nil {
		return nil, err
	}
	d.date = args[0]
	return d, nil
}

// evalDate evaluates a date operand: ok false means null/missing.
func evalDate(ctx *Context, date, tz Expr) (time.Time, bool, error) {
	v, err := date.Eval(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	loc := time.UTC
	if tz != nil {
		tv, err := tz.Eval(ctx)
		if err != nil {
			return time.Time{}, false, err
		}
		if IsNullish(tv) {
			return time.Time{}, false, nil
		}
		if loc, err = parseTimezone(tv); err != nil {
			return time.Time{}, false, err
		}
	}
	if IsNullish(v) {
		return time.Time{}, false, nil
	}
	ms, ok := dateMillis(v)
	if !ok {
		return time.Time{}, false, mongoerr.New(16006, "can't convert from BSON type %s to Date", TypeName(v))
	}
	return time.UnixMilli(ms).In(loc), true, nil
}

func parseTimezone(v bson.RawValue) (*time.Location, error) {
	s, ok := stringArg(v)
	if !ok {
		return nil, mongoerr.New(40517, "timezone must evaluate to a string, found %s", TypeName(v))
	}
	switch s {
	case "UTC", "GMT", "Z":
		return time.UTC, nil
	}
	if len(s) > 1 && (s[0] == '+' || s[0] == '-') {
		digits := strings.ReplaceAll(s[1:], ":", "")
		if len(digits) == 2 || len(digits) == 4 {
			h, err1 := strconv.Atoi(digits[:2])
			m := 0
			var err2 error
			if len(digits) == 4 {
				m, err2 = strconv.Atoi(digits[2:])
			}
			if err1 == nil && err2 == nil && h < 24 && m < 60 {
				off := h*3600 + m*60
				if s[0] == '-' {
					off = -off
				}
				return time.FixedZone(s, off), nil
			}
		}
	} else if loc, err := time.LoadLocation(s); err == nil && s != "" && s != "Local" {
		return loc, nil
	}
	return nil, mongoerr.New(40485, "unrecognized time zone identifier: \"%s\"", s)
}

func (d *datePart) Eval(ctx *Context) (bson.RawValue, error) {
	t, ok, err := evalDate(ctx, d.date, d.timezone)
	if err != nil || !ok {
		if err != nil {
			return Missing, err
		}
		return Null(), nil
	}
	var out int
	switch d.name {
	case "$year":
		out = t.Year()
	case "$month":
		out = int(t.Month())
	case "$dayOfMonth":
		out = t.Day()
	case "$hour":
		out = t.Hour()
	case "$minute":
		out = t.Minute()
	case "$second":
		out = t.Second()
	case "$millisecond":
		out = t.Nanosecond() / 1e6
	case "$dayOfWeek":
		out = int(t.Weekday()) + 1
	case "$dayOfYear":
		out = t.YearDay()
	case "$week":
		out = sundayWeek(t)
	case "$isoWeek":
		_, out = t.ISOWeek()
	case "$isoWeekYear":
		out, _ = t.ISOWeek()
		return Int64(int64(out)), nil
	case "$isoDayOfWeek":
		out = isoWeekday(t)
	}
	return Int32(int32(out)), nil
}

// sundayWeek is the week of the year (0-53) with weeks starting on Sunday,
// as strftime's %U and MongoDB's $week count them.
func sundayWeek(t time.Time) int {
	return (t.YearDay() + 6 - int(t.Weekday())) / 7
}

func isoWeekday(t time.Time) int {
	if t.Weekday() == time.Sunday {
		return 7
	}
	return int(t.Weekday())
}

type dateToString struct {
	format   Expr
	date     Expr
	timezone Expr
	onNull   Expr
}

func parseDateToString(p *parser, _ string, arg bson.RawValue) (Expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(18629, "$dateToString only supports an object as its argument")
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	d := &dateToString{}
	for _, el := range elems {
		e, err := p.parse(el.Value)
		if err != nil {
			return nil, err
		}
		switch el.Key {
		case "format":
			if s, ok := IsConstant(e); ok && s.Type == bson.TypeString {
				f, _ := s.StringValueOK()
				if err := checkDateFormat(f); err != nil {
					return nil, err
				}
			}
			d.format = e
		case "date":
			d.date = e
		case "timezone":
			d.timezone = e
		case "onNull":
			d.onNull = e
		default:
			return nil, mongoerr.New(18534, "Unrecognized argument to $dateToString: %s", el.Key)
		}
	}
	if d.date == nil {
		return nil, mongoerr.New(18628, "Missing 'date' parameter to $dateToString")
	}
	return d, nil
}

func checkDateFormat(f string) error {
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		if i+1 >= len(f) {
			return mongoerr.New(18535, "Unmatched '%%' at end of format string")
		}
		i++
		if !strings.ContainsRune("dGHjLmMSwuUVYzZ%bB", rune(f[i])) {
			return mongoerr.New(18536, "Invalid format character '%%%c' in format string", f[i])
		}
	}
	return nil
}

func (d *dateToString) Eval(ctx *Context) (bson.RawValue, error) {
	format := "%Y-%m-%dT%H:%M:%S.%LZ"
	if d.timezone != nil {
		format = "%Y-%m-%dT%H:%M:%S.%L"
	}
	if d.format != nil {
		fv, err := d.format.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if IsNullish(fv) {
			return Null(), nil
		}
		s, ok := stringArg(fv)
		if !ok {
			return Missing, mongoerr.New(18533, "$dateToString requires that 'format' be a string, found: %s with value %s", TypeName(fv), fv.String())
		}
		if err := checkDateFormat(s); err != nil {
			return Missing, err
		}
		format = s
	}
	t, ok, err := evalDate(ctx, d.date, d.timezone)
	if err != nil {
		return Missing, err
	}
	if !ok {
		if d.onNull != nil {
			return d.onNull.Eval(ctx)
		}
		return Null(), nil
	}
	return String(formatDate(format, t)), nil
}

func formatDate(format string, t time.Time) string {
	var sb strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			sb.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case 'd':
			fmt.Fprintf(&sb, "%02d", t.Day())
		case 'G':
			y, _ := t.ISOWeek()
			fmt.Fprintf(&sb, "%04d", y)
		case 'H':
			fmt.Fprintf(&sb, "%02d", t.Hour())
		case 'j':
			fmt.Fprintf(&sb, "%03d", t.YearDay())
		case 'L':
			fmt.Fprintf(&sb, "%03d", t.Nanosecond()/1e6)
		case 'm':
			fmt.Fprintf(&sb, "%02d", int(t.Month()))
		case 'M':
			fmt.Fprintf(&sb, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&sb, "%02d", t.Second())
		case 'w':
			fmt.Fprintf(&sb, "%d", int(t.Weekday())+1)
		case 'u':
			fmt.Fprintf(&sb, "%d", isoWeekday(t))
		case 'U':
			fmt.Fprintf(&sb, "%02d", sundayWeek(t))
		case 'V':
			_, w := t.ISOWeek()
			fmt.Fprintf(&sb, "%02d", w)
		case 'Y':
			fmt.Fprintf(&sb, "%04d", t.Year())
		case 'z':
			sb.WriteString(t.Format("-0700"))
		case 'Z':
			_, off := t.Zone()
			fmt.Fprintf(&sb, "%+d", off/60)
		case 'b':
			sb.WriteString(t.Format("Jan"))
		case 'B':
			sb.WriteString(t.Format("January"))
		case '%':
			sb.WriteByte('%')
		}
	}
	return sb.String()
}
