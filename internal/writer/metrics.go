package writer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes the writer's counters as Prometheus metrics. It reads them at scrape
// time, so the hot path pays nothing for metrics.
type collector struct {
	w                                                    *Writer
	commands, bytes, replies, skipped, selects           *prometheus.Desc
	errors, retries, reconnects, inFlight, inFlightBytes *prometheus.Desc
	applied, reconciled                                  *prometheus.Desc
}

func newCollector(w *Writer) *collector {
	labels := prometheus.Labels{"addr": w.opts.Target.Addr}
	d := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("ferry_writer_"+name, help, variable, labels)
	}
	return &collector{
		w:             w,
		commands:      d("commands_total", "Commands accepted for the destination."),
		bytes:         d("bytes_total", "Encoded bytes of the commands accepted."),
		replies:       d("replies_ok_total", "Commands the destination answered without error."),
		skipped:       d("skipped_total", "Commands refused by the destination and skipped (ignore-errors mode)."),
		selects:       d("selects_total", "SELECT commands injected to switch databases."),
		errors:        d("errors_total", "Error replies and connection failures, by reason.", "reason"),
		retries:       d("retries_total", "Retryable failures after which unanswered commands were resent."),
		reconnects:    d("reconnects_total", "Connections to the destination dialed after the first."),
		inFlight:      d("in_flight_commands", "Commands queued and not yet answered."),
		inFlightBytes: d("in_flight_bytes", "Encoded bytes of the commands queued and not yet answered."),
		applied:       d("applied_offset", "Highest source offset applied with everything before it."),
		reconciled:    d("reconciled_total", "Unanswered commands found already applied after a reconnect, and not resent."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.commands, c.bytes, c.replies, c.skipped, c.selects,
		c.errors, c.retries, c.reconnects, c.inFlight, c.inFlightBytes, c.applied, c.reconciled} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	counter := func(d *prometheus.Desc, v int64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(c.commands, s.Commands)
	counter(c.bytes, s.Bytes)
	counter(c.replies, s.Replies)
	counter(c.skipped, s.Skipped)
	counter(c.selects, s.Selects)
	for reason, n := range s.Errors {
		counter(c.errors, n, reason)
	}
	counter(c.retries, s.Retries)
	counter(c.reconnects, s.Reconnects)
	counter(c.reconciled, s.Reconciled)
	gauge(c.inFlight, int64(s.InFlight))
	gauge(c.inFlightBytes, int64(s.InFlightBytes))
	gauge(c.applied, s.Applied)
}
