package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/writer"
)

func newRDBCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rdb",
		Short: "Work with RDB files: inspect, restore",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErrorf("ferry rdb needs a subcommand: inspect or restore")
		},
	}
	cmd.AddCommand(newRDBInspectCommand(g), newRDBRestoreCommand(g))
	return cmd
}

func newRDBInspectCommand(g *globals) *cobra.Command {
	var (
		asJSON bool
		top    int
	)
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show what an RDB file holds: version, aux fields, keys by DB, type and encoding, largest keys, TTLs, functions, modules",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			rep, err := rdb.Inspect(bufio.NewReaderSize(f, 1<<20), rdb.InspectOptions{Decoder: rdb.Options{Size: fi.Size()}, TopKeys: top})
			if err != nil {
				return fmt.Errorf("inspect %s: %w", args[0], err)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteText(g.stdout)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().IntVar(&top, "top", rdb.DefaultTopKeys, "how many of the largest keys to list")
	return cmd
}

// restoreWindowBytes bounds the bytes in flight to the destination during a restore. The
// window's buffers are most of the restore's memory (the decoder streams big keys in
// chunks), and on a local or LAN link 8 MiB in flight already keeps the destination busy.
const restoreWindowBytes = 8 << 20

func newRDBRestoreCommand(g *globals) *cobra.Command {
	var (
		existing      string
		bigKey        int64
		forceCommands bool
		noProgress    bool
		connections   int
	)
	cmd := &cobra.Command{
		Use:   "restore FILE --target URL",
		Short: "Load an RDB file into a destination through Ferry's writer (pipelined RESTORE, command path for big keys)",
		Args:  cobra.ExactArgs(1),
	}
	fs := cmd.Flags()
	dst := addEndpointFlags(fs, "target")
	fs.StringVar(&existing, "existing", string(task.ExistingBlock), "block (refuse when the destination holds keys) or overwrite (replace the file's keys, keep the rest)")
	fs.Int64Var(&bigKey, "big-key-threshold", snapshot.DefaultBigKeyThreshold, "values larger than this many bytes are written as chunked commands instead of one RESTORE")
	fs.BoolVar(&forceCommands, "force-commands", false, "write every value as commands (RPUSH, HSET, …) instead of RESTORE payloads")
	fs.BoolVar(&noProgress, "no-progress", false, "no progress bar on a terminal")
	fs.IntVar(&connections, "connections", snapshot.DefaultConnections, "destination connections the RESTOREs are spread over (standalone destinations; big keys' commands use one)")
	sel := addFilterFlags(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		opts, err := dst.options()
		if err != nil {
			return err
		}
		flt, err := sel.filter()
		if err != nil {
			return err
		}
		ex, err := task.ParseExisting(existing)
		if err != nil {
			return usageErrorf("--existing: %v", err)
		}
		if connections < 1 || connections > 64 {
			return usageErrorf("--connections %d: want 1 to 64", connections)
		}
		ctx := cmd.Context()
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		// A cluster destination is found by asking it, and gets a router that sends each
		// key to the master of its slot.
		clustered, err := cluster.Enabled(ctx, opts)
		if err != nil {
			return err
		}
		if ex == task.ExistingBlock {
			if err := checkEmpty(ctx, opts, clustered); err != nil {
				return err
			}
		}
		target, err := snapshot.DestinationTarget(ctx, opts)
		if err != nil {
			return err
		}
		wopts := writer.Options{Target: opts, IgnoreErrors: ex == task.ExistingOverwrite, Logger: g.logger,
			MaxInFlightBytes: restoreWindowBytes}
		var wr snapshot.Destination
		if clustered {
			r, err := cluster.Open(ctx, cluster.Options{Target: opts, Writer: wopts, Logger: g.logger})
			if err != nil {
				return fmt.Errorf("open cluster destination %s: %w", opts.Addr, err)
			}
			defer r.Close()
			wr = r
		} else {
			w, err := writer.Open(ctx, wopts)
			if err != nil {
				return fmt.Errorf("open destination %s: %w", opts.Addr, err)
			}
			defer w.Close()
			wr = w
		}
		progress := &snapshot.Progress{}
		loader := &snapshot.Loader{Writer: wr, Target: target, BigKeyThreshold: bigKey, ForceCommands: forceCommands, Logger: g.logger, Progress: progress, Filter: flt}
		if !clustered && connections > 1 {
			// More connections for the RESTOREs of a standalone destination (a cluster
			// router already writes to every master at once). Big keys' commands stay on
			// the first, which keeps its window; the others share one.
			loader.Connections = connections
			loader.Open = func(ctx context.Context) (*writer.Writer, error) {
				o := wopts
				o.MaxInFlightBytes = restoreWindowBytes / connections
				return writer.Open(ctx, o)
			}
		}
		stopBar := restoreProgress(ctx, g, progress, fi.Size(), !noProgress && isTerminal(os.Stderr))
		start := time.Now()
		dec := rdb.NewDecoder(bufio.NewReaderSize(f, 1<<20), rdb.Options{Size: fi.Size()})
		err = loader.Load(ctx, dec)
		stopBar()
		if err != nil {
			return fmt.Errorf("restore %s into %s: %w (keys applied before the error: up to %d)", args[0], opts.Addr, err, progress.Keys.Load())
		}
		elapsed := time.Since(start)
		fmt.Fprintf(g.stdout, "restored %d keys (%d as commands, %d function libraries, %d not selected) from %s (%d bytes) into %s in %s (%.0f keys/s)\n",
			progress.Keys.Load(), progress.BigKeys.Load(), progress.Functions.Load(), progress.Filtered.Load(), args[0], fi.Size(), opts.Addr,
			elapsed.Round(time.Millisecond), float64(progress.Keys.Load())/elapsed.Seconds())
		return nil
	}
	return cmd
}

// checkEmpty refuses a destination that holds keys: on a cluster, any of its masters.
func checkEmpty(ctx context.Context, opts redis.Options, clustered bool) error {
	if !clustered {
		return snapshot.CheckEmpty(ctx, opts, "")
	}
	addrs, err := cluster.MasterAddrs(ctx, opts)
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		o := opts
		o.Addr = addr
		if err := snapshot.CheckEmpty(ctx, o, ""); err != nil {
			return fmt.Errorf("cluster master %s: %w", addr, err)
		}
	}
	return nil
}

// restoreProgress shows a byte progress bar over the file on a terminal.
func restoreProgress(ctx context.Context, g *globals, p *snapshot.Progress, total int64, terminal bool) (stop func()) {
	if !terminal {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	pb := mpb.NewWithContext(ctx, mpb.WithOutput(g.stderr), mpb.WithRefreshRate(200*time.Millisecond))
	bar := pb.New(total, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name("restore "), decor.Any(func(decor.Statistics) string { return fmt.Sprintf("%d keys ", p.Keys.Load()) })),
		mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f "), decor.AverageETA(decor.ET_STYLE_MMSS)))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			bar.SetCurrent(p.Bytes.Load())
			select {
			case <-ctx.Done():
				bar.Abort(false)
				pb.Wait()
				return
			case <-tick.C:
			}
		}
	}()
	return func() { bar.SetCurrent(p.Bytes.Load()); cancel(); wg.Wait() }
}
