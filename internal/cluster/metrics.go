package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes the router's counters as Prometheus metrics, read at scrape time so
// that routing pays nothing for them. The writers of the nodes have their own
// (ferry_writer_*, labelled with the node's address).
type collector struct {
	r                                                 *Router
	commands, split, splitParts, coLocated, coSkipped *prometheus.Desc
	broadcast, txns, redirects, episodes, refreshes   *prometheus.Desc
	applied, slotSkipped, slotTxns                    *prometheus.Desc
}

func newCollector(r *Router) *collector {
	d := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("ferry_cluster_"+name, help, variable, nil)
	}
	return &collector{
		r:           r,
		commands:    d("commands_total", "Commands accepted by the cluster router."),
		split:       d("split_total", "Cross-slot commands split into one command per slot."),
		splitParts:  d("split_parts_total", "Per-slot commands the split commands became."),
		coLocated:   d("colocated_total", "Cross-slot commands run on temporary copies of their keys in one slot, by command.", "cmd"),
		coSkipped:   d("colocated_skipped_total", "Co-located commands the destination refused, skipped (ignore-errors mode)."),
		broadcast:   d("broadcast_total", "Whole-dataset commands sent to every master."),
		txns:        d("transactions_total", "Source transactions, by how they were applied (one_slot, per_slot, unwrapped).", "how"),
		redirects:   d("redirects_total", "Commands re-sent after MOVED or ASK, and writer retries after TRYAGAIN or CLUSTERDOWN.", "kind"),
		episodes:    d("redirect_episodes_total", "Times the router drained every node to re-send redirected commands in order."),
		refreshes:   d("topology_refreshes_total", "Reads of the cluster topology after the first."),
		applied:     d("applied_offset", "Highest source offset applied on every node with everything before it."),
		slotSkipped: d("slot_skipped_total", "Commands (or per-slot parts) not applied because their slot's checkpoint says the slot holds them (a replay after a crash; exactly-once)."),
		slotTxns:    d("slot_transactions_total", "Per-slot transactions written with their slot's checkpoint (exactly-once)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.commands, c.split, c.splitParts, c.coLocated, c.coSkipped,
		c.broadcast, c.txns, c.redirects, c.episodes, c.refreshes, c.applied, c.slotSkipped, c.slotTxns} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	counter := func(d *prometheus.Desc, v int64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	counter(c.commands, s.Commands)
	counter(c.split, s.Split)
	counter(c.splitParts, s.SplitParts)
	for name, n := range s.CoLocated {
		counter(c.coLocated, n, name)
	}
	counter(c.coSkipped, s.CoSkipped)
	counter(c.broadcast, s.Broadcast)
	counter(c.txns, s.Transactions-s.TxnSplit-s.TxnUnwrapped, "one_slot")
	counter(c.txns, s.TxnSplit, "per_slot")
	counter(c.txns, s.TxnUnwrapped, "unwrapped")
	for kind, n := range s.Redirects {
		counter(c.redirects, n, kind)
	}
	counter(c.episodes, s.Episodes)
	counter(c.refreshes, s.Refreshes)
	counter(c.slotSkipped, s.SlotSkipped)
	counter(c.slotTxns, s.SlotTxns)
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(c.r.Applied()))
}
