// Package cmd holds the cobra commands of the psdb tool. Each top-level
// command lives in one file that registers its constructor with register
// from an init function; root.go builds the tree from that list.
//
// Commands write their results to the command's stdout and their progress
// and errors to its stderr (cmd.OutOrStdout / cmd.ErrOrStderr), never to
// os.Stdout directly, so tests can run them in-process. They must never call
// os.Exit: Execute turns an error into the exit status.
package cmd

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// constructors of the top-level commands, filled by register from the init
// functions of this package's files and read-only afterwards.
var constructors []func() *cobra.Command

// register adds a top-level command; call it from an init function.
func register(newCmd func() *cobra.Command) { constructors = append(constructors, newCmd) }

// NewRoot builds the psdb command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "psdb",
		Short:         "PSDB command line: run a local cluster, and more",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range constructors {
		root.AddCommand(c())
	}
	return root
}

// exitError carries an exit status other than 1 (used by commands whose
// failure has already been reported).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// Execute runs psdb with args and returns the process exit status.
func Execute(args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) && ee.err == nil {
			return ee.code // nothing more to say (psdb shell's quit(n))
		}
		fmt.Fprintf(stderr, "psdb: %v\n", err)
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}
