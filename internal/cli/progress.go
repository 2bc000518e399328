package cli

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ferrysync/ferry/internal/task"
)

// startProgress shows the task's progress: bars on a terminal, a log line every
// logInterval otherwise. The returned function stops it.
func startProgress(ctx context.Context, g *globals, t *task.Task, terminal bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if terminal {
			progressBars(ctx, g, t)
		} else {
			progressLogs(ctx, g, t)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

const logInterval = 10 * time.Second

func progressLogs(ctx context.Context, g *globals, t *task.Task) {
	tick := time.NewTicker(logInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := t.Status()
		switch st.Phase {
		case task.PhaseFull:
			g.logger.Info("progress", "phase", st.Phase.String(), "keys", st.FullKeys, "bytes", st.FullBytes, "total_bytes", st.FullTotalBytes)
		case task.PhaseIncremental:
			g.logger.Info("progress", "phase", st.Phase.String(), "ops_per_sec", int64(st.OpsPerSecond),
				"lag_bytes", st.LagBytes, "lag_ms", int64(st.LagSeconds*1000), "lag_estimated", st.LagEstimated, "applied_offset", st.AppliedOffset)
		}
	}
}

func progressBars(ctx context.Context, g *globals, t *task.Task) {
	p := mpb.NewWithContext(ctx, mpb.WithOutput(g.stderr), mpb.WithRefreshRate(200*time.Millisecond))
	var full, live *mpb.Bar
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if full != nil {
				full.Abort(false)
			}
			if live != nil {
				live.Abort(false)
			}
			p.Wait()
			return
		case <-tick.C:
		}
		st := t.Status()
		switch st.Phase {
		case task.PhaseFull:
			if full == nil {
				// A diskless transfer's size is known only at its end: until then the bar
				// shows keys, bytes and rate without a fraction or an ETA.
				keys := decor.Any(func(decor.Statistics) string { return fmt.Sprintf("%d keys ", t.Status().FullKeys) })
				if st.FullTotalBytes > 0 {
					full = p.New(st.FullTotalBytes, mpb.BarStyle(),
						mpb.PrependDecorators(decor.Name("full sync "), keys),
						mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f "),
							decor.AverageSpeed(decor.SizeB1024(0), "% .1f "), decor.AverageETA(decor.ET_STYLE_MMSS)))
				} else {
					full = p.New(0, mpb.NopStyle(),
						mpb.PrependDecorators(decor.Name("full sync "), keys,
							decor.Any(func(s decor.Statistics) string {
								return fmt.Sprintf("%.1f MiB read (diskless transfer: size unknown until its end)", float64(s.Current)/(1<<20))
							})))
				}
			}
			full.SetCurrent(st.FullBytes)
		case task.PhaseIncremental:
			if full != nil && !full.Completed() {
				full.SetTotal(-1, true)
			}
			if live == nil {
				live = p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
					s := t.Status()
					est := ""
					if s.LagEstimated {
						est = " (estimated)"
					}
					return fmt.Sprintf("incremental: %8.0f ops/s  lag %d bytes, %d ms%s  applied offset %d",
						s.OpsPerSecond, s.LagBytes, int64(s.LagSeconds*1000), est, s.AppliedOffset)
				})))
			}
		}
	}
}
