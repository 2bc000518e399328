// Package cli holds Ferry's command-line interface: one cobra command per verb,
// sharing the logging flags and the mapping of errors to exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes. Scripts depend on them, so they never change meaning.
const (
	ExitOK      = 0 // the job finished as asked
	ExitFailure = 1 // the job failed; the message says why
	ExitUsage   = 2 // the command line was wrong
)

// usageError marks an error caused by how ferry was invoked rather than by the job.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageErrorf reports a command-line mistake; Main maps it to ExitUsage.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// globals are the flags every subcommand shares.
type globals struct {
	logFormat string
	logLevel  string
	stdout    io.Writer
	stderr    io.Writer
	logger    *slog.Logger
}

// Main runs ferry with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "ferry: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintln(stderr, "Run 'ferry --help' for usage.")
		return ExitUsage
	}
	return ExitFailure
}

// isCobraUsageError recognises the errors cobra itself returns for bad flags and arguments;
// cobra has no error type for them, only these message shapes.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "invalid argument", "flag needs an argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return true
		}
	}
	return false
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Keep a Redis-protocol destination identical to a source",
		Long: `Ferry synchronizes Redis-protocol databases (Redis, Valkey): it attaches to the source as a
replica, streams its snapshot to the destination and then applies the live command stream.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(g.stderr, g.logFormat, g.logLevel)
			if err != nil {
				return err
			}
			g.logger = logger
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newVersionCommand(g), newSyncCommand(g), newPrecheckCommand(g), newVerifyCommand(g), newRDBCommand(g))
	return root
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usageErrorf("--log-format %q: want text or json", format)
	}
}
