package shell

import (
	"regexp"
	"strconv"
	"strings"
)

// The REPL's two questions about input text, answered by a small
// JavaScript scanner (strings, template literals, comments, regular
// expression literals and brackets): is the input unfinished (an open
// bracket, template or block comment, a string continued with a
// backslash), and which lines are mongosh's shell commands (use, show,
// it, exit, quit, help) rather than JavaScript.

// scanState is where the scanner stands at the end of some text.
type scanState struct {
	stack   []byte // open brackets: ( [ { and ` for a template, $ for ${ inside one
	inBlock bool   // inside /* */
	inQuote byte   // inside a ' or " string (only continued by a trailing backslash)
	escape  bool
	prev    byte // last significant character, to tell a regex from a division
}

// scan advances the state over text.
func (st *scanState) scan(text string) {
	for i := 0; i < len(text); i++ {
		ch := text[i]
		if st.inBlock {
			if ch == '*' && i+1 < len(text) && text[i+1] == '/' {
				st.inBlock = false
				i++
			}
			continue
		}
		if st.inQuote != 0 {
			switch {
			case st.escape:
				st.escape = false
			case ch == '\\':
				st.escape = true
			case ch == st.inQuote:
				st.inQuote = 0
				st.prev = 'a'
			case ch == '\n':
				st.inQuote = 0 // an unterminated string: the parser will say so
			}
			continue
		}
		if n := len(st.stack); n > 0 && st.stack[n-1] == '`' {
			switch {
			case st.escape:
				st.escape = false
			case ch == '\\':
				st.escape = true
			case ch == '`':
				st.stack = st.stack[:n-1]
				st.prev = 'a'
			case ch == '$' && i+1 < len(text) && text[i+1] == '{':
				st.stack = append(st.stack, '$')
				i++
			}
			continue
		}
		switch ch {
		case ' ', '\t', '\r', '\n':
			continue
		case '/':
			if i+1 < len(text) && text[i+1] == '/' {
				for i < len(text) && text[i] != '\n' {
					i++
				}
				continue
			}
			if i+1 < len(text) && text[i+1] == '*' {
				st.inBlock = true
				i++
				continue
			}
			if regexAllowed(st.prev) {
				i = skipRegex(text, i)
				st.prev = 'a'
				continue
			}
		case '\'', '"':
			st.inQuote = ch
			continue
		case '`':
			st.stack = append(st.stack, '`')
			continue
		case '(', '[', '{':
			st.stack = append(st.stack, ch)
		case ')', ']', '}':
			if n := len(st.stack); n > 0 {
				top := st.stack[n-1]
				if (top == '$' && ch == '}') || top == matching(ch) {
					st.stack = st.stack[:n-1]
				}
			}
		}
		st.prev = ch
	}
}

func matching(closing byte) byte {
	switch closing {
	case ')':
		return '('
	case ']':
		return '['
	}
	return '{'
}

// regexAllowed reports whether a / after prev starts a regular
// expression literal rather than a division.
func regexAllowed(prev byte) bool {
	if prev == 0 {
		return true
	}
	return strings.IndexByte("(,=:[!&|?{};+-*%<>~^", prev) >= 0
}

// skipRegex returns the index of the closing / of the regex at text[i]
// (or the end of the line).
func skipRegex(text string, i int) int {
	inClass := false
	for j := i + 1; j < len(text); j++ {
		switch text[j] {
		case '\\':
			j++
		case '[':
			inClass = true
		case ']':
			inClass = false
		case '/':
			if !inClass {
				k := j + 1
				for k < len(text) && isIdentChar(text[k]) {
					k++
				}
				return k - 1
			}
		case '\n':
			return j
		}
	}
	return len(text)
}

func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Incomplete reports whether src is unfinished JavaScript that the REPL
// should continue on the next line (prompt "... ").
func Incomplete(src string) bool {
	var st scanState
	st.scan(src)
	if len(st.stack) > 0 || st.inBlock {
		return true
	}
	return st.inQuote != 0 && st.escape
}

var commandRe = regexp.MustCompile(`^\s*(use|show|it|exit|quit|help)(?:\s+([A-Za-z0-9_\-$.]+))?\s*;?\s*$`)

// rewriteCommands turns the lines that are shell commands (at the top
// level: not inside brackets, strings or comments) into calls of the
// shell's command function, so that `use test` works in the REPL, in
// --eval and in script files.
func rewriteCommands(src string) string {
	if !strings.ContainsAny(src, "usieqh") {
		return src
	}
	lines := strings.SplitAfter(src, "\n")
	var st scanState
	var b strings.Builder
	for _, line := range lines {
		top := len(st.stack) == 0 && !st.inBlock && st.inQuote == 0
		if top {
			body := strings.TrimRight(line, "\n")
			if m := commandRe.FindStringSubmatch(body); m != nil && commandArgOK(m[1], m[2]) {
				b.WriteString("__psdb.command(" + strconv.Quote(m[1]) + ", " + strconv.Quote(m[2]) + ");")
				if strings.HasSuffix(line, "\n") {
					b.WriteByte('\n')
				}
				st.prev = ';'
				continue
			}
		}
		b.WriteString(line)
		st.scan(line)
	}
	return b.String()
}

// commandArgOK tells a shell command from JavaScript that looks alike:
// `use` and `show` take one argument, the others none.
func commandArgOK(cmd, arg string) bool {
	switch cmd {
	case "use", "show":
		return arg != ""
	}
	return arg == ""
}
