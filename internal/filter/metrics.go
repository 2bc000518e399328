package filter

import "github.com/prometheus/client_golang/prometheus"

// collector exposes a Filter's counters. It reads them when scraped, so the hot path only
// touches atomics.
type collector struct {
	f                         *Filter
	keys, commands, splitKeys *prometheus.Desc
	rewritten, refused        *prometheus.Desc
	renamedKeys, renamed      *prometheus.Desc
}

// Collector returns a Prometheus collector for the filter's counters, with constLabels
// (typically the task name) on every series:
//
//	ferry_filter_keys_total{reason}          snapshot keys not copied
//	ferry_filter_commands_total{reason}      stream commands not forwarded
//	ferry_filter_split_keys_total{reason}    keys taken out of multi-key commands
//	ferry_filter_rewritten_commands_total    commands forwarded rewritten
//	ferry_filter_refused_commands_total      commands the selection cannot represent
//	ferry_filter_renamed_keys_total          snapshot keys written under their database's key prefix
//	ferry_filter_renamed_commands_total      stream commands forwarded with their keys prefixed
func (f *Filter) Collector(constLabels prometheus.Labels) prometheus.Collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("ferry", "filter", name), help, labels, constLabels)
	}
	return &collector{
		f:           f,
		keys:        desc("keys_total", "Snapshot keys not copied, by reason.", "reason"),
		commands:    desc("commands_total", "Stream commands not forwarded, by reason.", "reason"),
		splitKeys:   desc("split_keys_total", "Keys taken out of multi-key commands forwarded in part, by reason.", "reason"),
		rewritten:   desc("rewritten_commands_total", "Stream commands forwarded in a rewritten form (split, renumbered)."),
		refused:     desc("refused_commands_total", "Stream commands whose effect the selection cannot represent."),
		renamedKeys: desc("renamed_keys_total", "Snapshot keys written under their database's key prefix (--db-map N:prefix=P)."),
		renamed:     desc("renamed_commands_total", "Stream commands forwarded with their keys under their database's key prefix."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.keys
	ch <- c.commands
	ch <- c.splitKeys
	ch <- c.rewritten
	ch <- c.refused
	ch <- c.renamedKeys
	ch <- c.renamed
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.f.Counts()
	for r := ReasonNone + 1; r < NumReasons; r++ {
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.CounterValue, float64(n.Keys[r]), r.String())
		ch <- prometheus.MustNewConstMetric(c.commands, prometheus.CounterValue, float64(n.Commands[r]), r.String())
		ch <- prometheus.MustNewConstMetric(c.splitKeys, prometheus.CounterValue, float64(n.SplitKeys[r]), r.String())
	}
	ch <- prometheus.MustNewConstMetric(c.rewritten, prometheus.CounterValue, float64(n.Rewritten))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(n.Refused))
	ch <- prometheus.MustNewConstMetric(c.renamedKeys, prometheus.CounterValue, float64(n.RenamedKeys))
	ch <- prometheus.MustNewConstMetric(c.renamed, prometheus.CounterValue, float64(n.Renamed))
}
