package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrysync/ferry/internal/writer"
)

// Backoff between redirect rounds that keep finding redirects (a migration in progress
// answers ASK again until the key has moved).
const (
	minRedirectBackoff = 10 * time.Millisecond
	maxRedirectBackoff = time.Second
)

// settle ends a redirect episode: it flushes every writer, so that every command written
// so far is answered or redirected, then re-sends the redirected ones in order, and
// repeats until a flush finds no new redirect. Only then may newer commands be routed:
// nothing older for their slot is on its way anywhere.
func (r *Router) settle(ctx context.Context) error {
	var start time.Time
	backoff := time.Duration(0)
	for round := 0; ; round++ {
		if err := r.flushWriters(ctx); err != nil {
			return err
		}
		r.redirMu.Lock()
		batch := r.redirs
		r.redirs = nil
		if len(batch) == 0 {
			r.episode = false
			r.redirect.Store(false)
			r.redirMu.Unlock()
			if round > 0 {
				r.log.Debug("redirect episode settled", "rounds", round, "took", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		r.redirMu.Unlock()
		if round == 0 {
			start = time.Now()
			r.episodes.Add(1)
		} else if time.Since(start) > r.opts.RedirectTimeout {
			rd := batch[0].rd
			return fmt.Errorf("cluster: commands still redirected after %s (last: %s for %s at offset %d): "+
				"the cluster's slot map does not settle; check it with redis-cli --cluster check",
				r.opts.RedirectTimeout, rd.Err, clip(rd.Cmds[0].Args[0]), rd.Cmds[len(rd.Cmds)-1].Offset)
		}
		if round >= 2 {
			// The same slots keep redirecting: a migration is moving keys one by one.
			backoff = min(max(2*backoff, minRedirectBackoff), maxRedirectBackoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if err := r.reroute(ctx, batch); err != nil {
			return err
		}
	}
}

// reroute sends redirected commands where the redirect says, in their order: after
// -ASK with ASKING to the importing node (the slot still belongs to the old one), after
// -MOVED to the slot's new master, learnt from the redirect itself and a fresh topology.
func (r *Router) reroute(ctx context.Context, batch []pending) error {
	var hints []string
	for _, p := range batch {
		if _, addr, ok := p.rd.Err.IsMoved(); ok && !contains(hints, addr) {
			hints = append(hints, addr)
		}
	}
	if len(hints) > 0 {
		// One read of the whole map per episode instead of one MOVED per migrated slot.
		if err := r.refresh(ctx, hints...); err != nil {
			r.log.Warn("could not re-read the cluster topology after MOVED; following the redirects alone", "err", err)
		}
		// The redirect is the newest word on its slot: it wins over the map just read,
		// which may come from a node that has not heard of the change yet.
		for _, p := range batch {
			if slot, addr, ok := p.rd.Err.IsMoved(); ok {
				n, err := r.nodeAt(ctx, addr)
				if err != nil {
					return err
				}
				r.slots[slot&(len(r.slots)-1)] = n
			}
		}
	}
	for _, p := range batch {
		var to *node
		asking := false
		if slot, _, ok := p.rd.Err.IsMoved(); ok {
			to = r.slots[slot&(len(r.slots)-1)]
			r.moved.Add(1)
		} else if _, addr, ok := p.rd.Err.IsAsk(); ok {
			n, err := r.nodeAt(ctx, addr)
			if err != nil {
				return err
			}
			to, asking = n, true
			r.ask.Add(1)
		} else {
			return fmt.Errorf("cluster: node %s redirected with %q, which is neither MOVED nor ASK", p.from.addr, p.rd.Err)
		}
		if asking {
			// ASKING lets the next command (or, before MULTI, the whole transaction) run
			// on the importing node. Same database as the command, so that the writer
			// injects no SELECT between them.
			if err := r.send(ctx, to, writer.Command{DB: p.rd.Cmds[0].DB, Args: askingArgs}); err != nil {
				return err
			}
		}
		for _, c := range p.rd.Cmds {
			if err := r.send(ctx, to, c); err != nil {
				return err
			}
		}
	}
	return nil
}

var askingArgs = [][]byte{[]byte("ASKING")}

// refresh re-reads the topology from the hinted nodes, then the known masters, then the
// seeds, and applies the first complete answer.
func (r *Router) refresh(ctx context.Context, hints ...string) error {
	candidates := append([]string(nil), hints...)
	for _, n := range r.masters() {
		if !contains(candidates, n.addr) {
			candidates = append(candidates, n.addr)
		}
	}
	for _, s := range append([]string{r.opts.Target.Addr}, r.opts.Seeds...) {
		if !contains(candidates, s) {
			candidates = append(candidates, s)
		}
	}
	var lastErr error
	for _, addr := range candidates {
		c, err := r.control(ctx, addr)
		if err != nil {
			lastErr = err
			continue
		}
		t, err := Fetch(ctx, c, r.tls())
		if err != nil {
			if !isReply(err) {
				r.dropControl(addr)
			}
			lastErr = fmt.Errorf("%s: %w", addr, err)
			continue
		}
		r.refreshes.Add(1)
		before := r.masters()
		if err := r.applyTopology(ctx, t); err != nil {
			return err
		}
		if after := r.masters(); !sameNodes(before, after) {
			addrs := make([]string, len(after))
			for i, n := range after {
				addrs[i] = n.addr
			}
			r.log.Info("cluster topology changed", "masters", addrs, "from", addr)
		}
		return nil
	}
	return fmt.Errorf("cluster: no node answered with the topology: %w", lastErr)
}

func sameNodes(a, b []*node) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
