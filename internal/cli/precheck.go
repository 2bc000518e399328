package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/precheck"
	"github.com/ferrysync/ferry/internal/task"
)

// precheckFlags are the flags that say what a task syncs, as the precheck needs them.
// The endpoint flags (URL, password source, TLS) and --task, --existing and
// --big-key-threshold mean what they mean for ferry sync.
type precheckFlags struct {
	src, dst        *endpointFlags
	dbs, dbMap      string
	existing        string
	bigKeyThreshold int64
	task            string
}

func (f *precheckFlags) register(fs *pflag.FlagSet) {
	f.src = addEndpointFlags(fs, "source")
	f.dst = addEndpointFlags(fs, "target")
	fs.StringVar(&f.dbs, "dbs", "", `source databases to sync, e.g. "0,3,5-9" (default all)`)
	fs.StringVar(&f.dbMap, "db-map", "", `source:target database mapping, e.g. "0:1,3:3" (default: same numbers); N:prefix=P (database 0, keys renamed) as ferry sync's`)
	fs.StringVar(&f.existing, "existing", precheck.ExistingBlock, "block (refuse when the destination DBs hold keys) or overwrite (replace what the source has, keep the rest)")
	fs.Int64Var(&f.bigKeyThreshold, "big-key-threshold", task.DefaultBigKeyThreshold, "values larger than this many bytes are written as chunked commands instead of one RESTORE")
	fs.StringVar(&f.task, "task", "", "task name, which names its heartbeat and checkpoint keys (default: derived from the source and target addresses, as ferry sync does)")
}

// config turns the flags into a precheck.Config; mistakes are usage errors.
func (f *precheckFlags) config(fs *pflag.FlagSet) (precheck.Config, error) {
	var cfg precheck.Config
	var err error
	if cfg.Source, err = f.src.options(); err != nil {
		return cfg, err
	}
	if cfg.Target, err = f.dst.options(); err != nil {
		return cfg, err
	}
	if f.dbs != "" {
		if cfg.DBs, err = filter.ParseDBs(f.dbs); err != nil {
			return cfg, usageErrorf("--dbs: %v", err)
		}
	}
	if f.dbMap != "" {
		if cfg.DBMap, cfg.DBPrefix, err = filter.ParseDBMapping(f.dbMap); err != nil {
			return cfg, usageErrorf("--db-map: %v", err)
		}
	}
	switch f.existing {
	case precheck.ExistingBlock, precheck.ExistingOverwrite:
		cfg.Existing = f.existing
	default:
		return cfg, usageErrorf("--existing %q: want %s or %s", f.existing, precheck.ExistingBlock, precheck.ExistingOverwrite)
	}
	if f.bigKeyThreshold <= 0 {
		return cfg, usageErrorf("--big-key-threshold %d: want a positive number of bytes", f.bigKeyThreshold)
	}
	// Left at 0 when not given, so the report says the default applies.
	if fs.Changed("big-key-threshold") {
		cfg.BigKeyThreshold = f.bigKeyThreshold
	}
	cfg.Task = f.task
	if cfg.Task == "" {
		cfg.Task = task.DefaultName(cfg.Source, cfg.Target)
	}
	return cfg, nil
}

func newPrecheckCommand(g *globals) *cobra.Command {
	var (
		f              precheckFlags
		asJSON         bool
		acceptWarnings bool
	)
	cmd := &cobra.Command{
		Use:   "precheck --source URL --target URL",
		Short: "Check a source and a target before syncing, and say what to fix",
		Long: `Precheck connects to both sides and checks, without writing anything, what a sync needs:
connectivity, TLS and login; the ACL permissions Ferry uses on each side; engines, versions
and RDB formats; target memory and eviction policy; keys already in the target; the source's
backlog, repl-timeout and replica buffer limits against its write rate; heartbeat permission;
cluster slot coverage and database mapping; modules; and big keys.

Each check passes, warns or fails, with what was found and what to do. ferry sync runs the
same checks first. Exit status 0 when every check passes (or only warns, with
--accept-warnings), 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd.Flags())
			if err != nil {
				return err
			}
			cfg.Logger = g.logger
			rep, err := precheck.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				err = rep.WriteJSON(g.stdout)
			} else {
				err = rep.WriteTable(g.stdout)
			}
			if err != nil {
				return fmt.Errorf("write the report: %w", err)
			}
			return precheckVerdict(rep, acceptWarnings)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&acceptWarnings, "accept-warnings", false, "exit 0 when checks only warn")
	return cmd
}

// precheckVerdict is nil when a sync may start, else an error saying why not.
func precheckVerdict(rep *precheck.Report, acceptWarnings bool) error {
	if rep.OK(acceptWarnings) {
		return nil
	}
	fails, warns := rep.Count(precheck.Fail), rep.Count(precheck.Warn)
	if fails > 0 {
		return fmt.Errorf("precheck failed: %d %s failed, %d warned; fix what the report advises (→)", fails, checkNoun(fails), warns)
	}
	return fmt.Errorf("precheck: %d %s warned; read them, and pass --accept-warnings to go ahead anyway", warns, checkNoun(warns))
}

func checkNoun(n int) string {
	if n == 1 {
		return "check"
	}
	return "checks"
}
