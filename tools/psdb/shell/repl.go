package shell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dop251/goja"
	"github.com/peterh/liner"
)

// HistoryEnv names the environment variable that overrides the history
// file (default ~/.psdb_shell_history).
const HistoryEnv = "PSDB_SHELL_HISTORY"

// maxHistory is how many entries the history file keeps.
const maxHistory = 1000

// DefaultHistoryPath is $PSDB_SHELL_HISTORY, else ~/.psdb_shell_history
// ("" when there is no home directory).
func DefaultHistoryPath() string {
	if p := os.Getenv(HistoryEnv); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".psdb_shell_history")
}

// RunScript evaluates a whole script (--eval text or a file). With
// printResult, the completion value is printed as the REPL would (what
// --eval does). It returns nil, an *ExitError for quit(), or the error
// to report with ErrorText.
func (s *Shell) RunScript(ctx context.Context, src string, printResult bool) error {
	v, err := s.Eval(ctx, src)
	if err != nil {
		return err
	}
	if printResult {
		text, err := s.safeResultText(v)
		if err != nil {
			return err
		}
		if text != "" {
			fmt.Fprintln(s.out, text)
		}
	}
	return nil
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// lineReader is where the REPL gets its lines: liner on a terminal, a
// plain reader otherwise.
type lineReader interface {
	Prompt(prompt string) (string, error)
	AppendHistory(entry string)
	Close() error
}

// plainReader reads lines without editing or prompts (stdin not a
// terminal).
type plainReader struct{ sc *bufio.Scanner }

func (r *plainReader) Prompt(string) (string, error) {
	if r.sc.Scan() {
		return r.sc.Text(), nil
	}
	if err := r.sc.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}
func (r *plainReader) AppendHistory(string) {}
func (r *plainReader) Close() error         { return nil }

// linerReader is liner with its history saved after each entry.
type linerReader struct {
	st   *liner.State
	path string
}

func (r *linerReader) Prompt(p string) (string, error) { return r.st.Prompt(p) }
func (r *linerReader) Close() error                    { r.save(); return r.st.Close() }
func (r *linerReader) AppendHistory(entry string) {
	r.st.AppendHistory(entry)
	r.save()
}

func (r *linerReader) save() {
	if r.path == "" {
		return
	}
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = r.st.WriteHistory(f)
}

// REPLOptions configure RunREPL.
type REPLOptions struct {
	In          io.Reader // lines; a terminal *os.File gets line editing
	HistoryPath string    // "" keeps no history
	Banner      string    // printed first, unless empty
}

// RunREPL reads, evaluates and prints until EOF, exit or quit(). On a
// terminal it edits lines with liner, keeps the history file, continues
// unfinished input on "... " lines, and Ctrl-C cancels the line being
// typed or interrupts the running evaluation. It returns the exit status:
// quit(n)'s n, else 0 at the end of input on a terminal, and without a
// terminal 1 if any evaluation failed.
func (s *Shell) RunREPL(ctx context.Context, o REPLOptions) int {
	var r lineReader
	tty := false
	if f, ok := o.In.(*os.File); ok && f == os.Stdin && isTerminal(f) && liner.TerminalSupported() {
		st := liner.NewLiner()
		st.SetCtrlCAborts(true)
		st.SetMultiLineMode(true)
		st.SetTabCompletionStyle(liner.TabPrints)
		st.SetWordCompleter(s.complete)
		if o.HistoryPath != "" {
			if hf, err := os.Open(o.HistoryPath); err == nil {
				_, _ = st.ReadHistory(hf)
				hf.Close()
			}
		}
		r = &linerReader{st: st, path: o.HistoryPath}
		tty = true
	} else {
		sc := bufio.NewScanner(o.In)
		sc.Buffer(make([]byte, 64*1024), 16<<20)
		r = &plainReader{sc: sc}
	}
	defer r.Close()

	var evaluating atomic.Bool
	if tty {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-sigs:
					if evaluating.Load() {
						s.Interrupt()
					}
				case <-done:
					return
				}
			}
		}()
		defer func() { signal.Stop(sigs); close(done); wg.Wait() }()
	}
	if o.Banner != "" {
		fmt.Fprintln(s.out, o.Banner)
	}
	failed := false
	var buf []string
	for {
		if ctx.Err() != nil {
			return 1
		}
		prompt := s.DB() + "> "
		if len(buf) > 0 {
			prompt = "... "
		}
		line, err := r.Prompt(prompt)
		if errors.Is(err, liner.ErrPromptAborted) {
			buf = nil
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(s.errOut, "read input: %v\n", err)
				return 1
			}
			if len(buf) > 0 {
				fmt.Fprintln(s.errOut, "SyntaxError: unexpected end of input")
				failed = true
			}
			if tty {
				fmt.Fprintln(s.out)
			}
			if failed && !tty {
				return 1
			}
			return 0
		}
		buf = append(buf, line)
		src := strings.Join(buf, "\n")
		if strings.TrimSpace(src) == "" {
			buf = nil
			continue
		}
		if unfinished(src) {
			continue
		}
		buf = nil
		r.AppendHistory(strings.Join(strings.Fields(src), " "))

		evaluating.Store(true)
		v, err := s.Eval(ctx, src)
		text := ""
		if err == nil {
			text, err = s.safeResultText(v)
		}
		evaluating.Store(false)
		var ee *ExitError
		switch {
		case errors.As(err, &ee):
			return ee.Code
		case err != nil:
			failed = true
			fmt.Fprintln(s.errOut, ErrorText(err))
		case text != "":
			fmt.Fprintln(s.out, text)
		}
	}
}

// unfinished reports whether the REPL should read another line: open
// brackets, or a parser that ran out of input.
func unfinished(src string) bool {
	if Incomplete(src) {
		return true
	}
	_, err := goja.Parse("", rewriteCommands(src))
	return err != nil && strings.Contains(err.Error(), "Unexpected end of input")
}

// safeResultText formats a result; printing a cursor reads from the
// server, whose errors are thrown as JavaScript exceptions.
func (s *Shell) safeResultText(v goja.Value) (text string, err error) {
	defer func() {
		if r := recover(); r != nil {
			if jv, ok := r.(goja.Value); ok {
				err = &scriptError{v: jv}
				return
			}
			panic(r)
		}
	}()
	return s.ResultText(v), nil
}

// scriptError is a JavaScript error raised outside of goja's run loop
// (while printing a result).
type scriptError struct{ v goja.Value }

func (e *scriptError) Error() string {
	if o, ok := e.v.(*goja.Object); ok && o.ClassName() == "Error" {
		return errorText(o)
	}
	return e.v.String()
}
