package throttle

import "github.com/prometheus/client_golang/prometheus"

type collector struct {
	l                                     *Limiter
	maxOps, maxBytes, throttled, delaySec *prometheus.Desc
}

// Collector returns a Prometheus collector for the limiter, with constLabels on every
// series (typically the task and the phase):
//
//	ferry_throttle_max_ops              the ops/s limit (0 unlimited)
//	ferry_throttle_max_bytes            the bytes/s limit (0 unlimited)
//	ferry_throttle_throttled            1 while the limiter holds callers back (see Throttled)
//	ferry_throttle_delay_seconds_total  time callers spent waiting
func (l *Limiter) Collector(constLabels prometheus.Labels) prometheus.Collector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("ferry", "throttle", name), help, nil, constLabels)
	}
	return &collector{
		l:         l,
		maxOps:    desc("max_ops", "Operations per second allowed (0: unlimited)."),
		maxBytes:  desc("max_bytes", "Bytes per second allowed (0: unlimited)."),
		throttled: desc("throttled", "1 while the limiter is holding the task back (or did within the last second)."),
		delaySec:  desc("delay_seconds_total", "Time spent waiting for the throttle."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.maxOps
	ch <- c.maxBytes
	ch <- c.throttled
	ch <- c.delaySec
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.Stats()
	throttled := 0.0
	if c.l.Throttled() {
		throttled = 1
	}
	ch <- prometheus.MustNewConstMetric(c.maxOps, prometheus.GaugeValue, float64(s.Limits.MaxOps))
	ch <- prometheus.MustNewConstMetric(c.maxBytes, prometheus.GaugeValue, float64(s.Limits.MaxBytes))
	ch <- prometheus.MustNewConstMetric(c.throttled, prometheus.GaugeValue, throttled)
	ch <- prometheus.MustNewConstMetric(c.delaySec, prometheus.CounterValue, s.Delayed.Seconds())
}
