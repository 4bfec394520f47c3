package cmd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/psdb/psdb/tools/psdb/shell"
)

func init() { register(newShellCmd) }

// shellFlags are the flags of psdb shell.
type shellFlags struct {
	eval           []string
	files          []string
	quiet          bool
	history        string
	connectTimeout time.Duration
	timeout        time.Duration
}

func newShellCmd() *cobra.Command {
	var f shellFlags
	c := &cobra.Command{
		Use:   "shell [uri] [script.js ...]",
		Short: "MongoDB shell: a JavaScript REPL with mongosh's helpers (db, sh, rs)",
		Long: `psdb shell connects to a router (default ` + shell.DefaultURI + `) and reads
JavaScript with mongosh's syntax and helpers: use <db>, show dbs, show collections, it,
db.<coll>.find(...) and the other collection methods, sh.status(), rs.status(), ...

With --eval or script files it runs them and exits: status 0 on success, 1 when an
error was not caught (reported on stderr), n after quit(n). Without them it is
interactive, with line editing and a history file (--history, $` + shell.HistoryEnv + `,
default ~/.psdb_shell_history).

The uri may be a full connection string, host:port[/db], or a database name
(on 127.0.0.1:27017).`,
		RunE: func(c *cobra.Command, args []string) error { return runShell(c, f, args) },
	}
	c.Flags().StringArrayVar(&f.eval, "eval", nil, "evaluate this JavaScript and print its result (repeatable)")
	c.Flags().StringArrayVarP(&f.files, "file", "f", nil, "run this script file (repeatable)")
	c.Flags().BoolVar(&f.quiet, "quiet", false, "print no banner")
	c.Flags().StringVar(&f.history, "history", "", "history file (default $"+shell.HistoryEnv+" or ~/.psdb_shell_history)")
	c.Flags().DurationVar(&f.connectTimeout, "connect-timeout", shell.DefaultConnectTimeout, "give up connecting after this long")
	c.Flags().DurationVar(&f.timeout, "timeout", shell.DefaultOpTimeout, "bound on each operation sent to the server (0: none)")
	return c
}

// shellURI turns the uri argument into a connection string: mongosh
// accepts host:port[/db] and a bare database name too.
func shellURI(arg string) string {
	switch {
	case arg == "":
		return shell.DefaultURI
	case strings.HasPrefix(arg, "mongodb://") || strings.HasPrefix(arg, "mongodb+srv://"):
		return arg
	case strings.Contains(arg, "://"):
		return arg // the driver reports the unknown scheme
	case strings.ContainsAny(arg, ":/") || strings.Contains(arg, "localhost"):
		return "mongodb://" + arg
	}
	return "mongodb://127.0.0.1:27017/" + arg
}

func runShell(c *cobra.Command, f shellFlags, args []string) error {
	uriArg := ""
	files := append([]string(nil), f.files...)
	for _, a := range args {
		if strings.HasSuffix(a, ".js") {
			files = append(files, a)
			continue
		}
		if uriArg != "" {
			return fmt.Errorf("more than one connection string: %q and %q", uriArg, a)
		}
		uriArg = a
	}
	scripts := make([]string, 0, len(files))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read script: %w", err)
		}
		scripts = append(scripts, string(b))
	}
	ctx := c.Context()
	sh, err := shell.New(ctx, shell.Options{URI: shellURI(uriArg), ConnectTimeout: f.connectTimeout, OpTimeout: f.timeout,
		Out: c.OutOrStdout(), Err: c.ErrOrStderr()})
	if err != nil {
		return err
	}
	defer sh.Close()

	if len(f.eval) > 0 || len(scripts) > 0 {
		for _, src := range f.eval {
			if err := sh.RunScript(ctx, src, true); err != nil {
				return scriptExit(err)
			}
		}
		for _, src := range scripts {
			if err := sh.RunScript(ctx, src, false); err != nil {
				return scriptExit(err)
			}
		}
		return nil
	}
	history := f.history
	if history == "" {
		history = shell.DefaultHistoryPath()
	}
	banner := ""
	if !f.quiet {
		banner = "psdb shell connected to " + sh.URI() + "\nType help for help; quit() or Ctrl-D leaves."
	}
	// On a terminal (stdin itself) the REPL edits lines with liner.
	if code := sh.RunREPL(ctx, shell.REPLOptions{In: c.InOrStdin(), HistoryPath: history, Banner: banner}); code != 0 {
		return &exitError{code: code} // the session has said why
	}
	return nil
}

// scriptExit turns a script's outcome into psdb's exit: quit(0) is
// success, quit(n) status n, any other error status 1 with the shell's
// one-line report.
func scriptExit(err error) error {
	var ee *shell.ExitError
	if errors.As(err, &ee) {
		if ee.Code == 0 {
			return nil
		}
		return &exitError{code: ee.Code} // quit(n): nothing to report
	}
	return errors.New(shell.ErrorText(err))
}
