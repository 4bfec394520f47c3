package query

import (
	"encoding/binary"
	"errors"
	"regexp"
	"regexp/syntax"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// MongoDB uses PCRE; PSDB uses Go's regexp (RE2), which guarantees linear
// time (no catastrophic backtracking on hostile patterns) but does not
// support backreferences (\1), lookahead/lookbehind ((?=, (?!, (?<=, (?<!),
// atomic groups, possessive quantifiers, \Z or \G. Patterns using them are
// refused with BadValue instead of silently matching differently. One known
// difference remains for valid patterns: in PCRE "$" without the m option
// also matches before a final "\n"; in RE2 it matches only at the very end.
//
// Options: i (case-insensitive), m (^ and $ match at line breaks), s (dot
// matches newline) and x (extended: unescaped whitespace and #-comments
// outside character classes are ignored; PSDB strips them before compiling
// because RE2 has no x flag). u is accepted and ignored (patterns are always
// UTF-8). Any other option letter is refused with Location51108.

// regexCodeInvalid is MongoDB's code for a pattern that does not compile.
const regexCodeInvalid mongoerr.Code = 51091

// regexCodeBadFlag is MongoDB's code for an unknown option letter.
const regexCodeBadFlag mongoerr.Code = 51108

// compiledRegex is a pattern with its options, compiled.
type compiledRegex struct {
	pattern string
	options string
	re      *regexp.Regexp
}

func compileRegex(pattern, options string) (*compiledRegex, error) {
	if strings.IndexByte(pattern, 0) >= 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "Regular expression cannot contain an embedded null byte")
	}
	var flags strings.Builder
	extended := false
	for _, c := range options {
		switch c {
		case 'i', 'm', 's':
			if !strings.ContainsRune(flags.String(), c) {
				flags.WriteRune(c)
			}
		case 'x':
			extended = true
		case 'u':
		default:
			return nil, mongoerr.New(regexCodeBadFlag, "invalid flag in regex options: %c", c)
		}
	}
	src := pattern
	if extended {
		src = stripExtended(src)
	}
	if flags.Len() > 0 {
		src = "(?" + flags.String() + ")" + src
	}
	re, err := regexp.Compile(src)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) && (se.Code == syntax.ErrInvalidPerlOp || se.Code == syntax.ErrInvalidEscape) {
			return nil, mongoerr.New(mongoerr.BadValue,
				"Regular expression uses syntax PSDB does not support (RE2 has no backreferences, lookaround or atomic groups): %s", se.Error())
		}
		return nil, mongoerr.New(regexCodeInvalid, "Regular expression is invalid: %v", err)
	}
	return &compiledRegex{pattern: pattern, options: options, re: re}, nil
}

// stripExtended removes what PCRE's x option ignores: unescaped whitespace
// and comments from an unescaped # to the end of the line, outside
// character classes.
func stripExtended(p string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			b.WriteByte(c)
			b.WriteByte(p[i+1])
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal.
			if i+1 < len(p) && p[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
		case c == '#':
			for i+1 < len(p) && p[i+1] != '\n' {
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// matches reports whether v matches the regex: strings and symbols by the
// pattern, regex values by identical pattern and options.
func (r *compiledRegex) matches(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeString, bson.TypeSymbol:
		// The value is int32 length, bytes, NUL; match the bytes in place.
		b := v.Value
		if len(b) < 5 {
			return false
		}
		n := int(int32(binary.LittleEndian.Uint32(b)))
		if n < 1 || n > len(b)-4 {
			return false
		}
		return r.re.Match(b[4 : 4+n-1])
	case bson.TypeRegex:
		p, o, ok := v.RegexOK()
		return ok && p == r.pattern && o == r.options
	}
	return false
}
