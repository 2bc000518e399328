package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// series is one figure over the runs of a scenario.
type series []float64

func (s series) sorted() []float64 {
	v := slices.Clone([]float64(s))
	slices.Sort(v)
	return v
}

// median of the runs (the mean of the middle two for an even count).
func (s series) median() float64 {
	v := s.sorted()
	if len(v) == 0 {
		return math.NaN()
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// String renders "median [min – max]", or the one value of a single run.
func (s series) format(prec int) string {
	v := s.sorted()
	switch len(v) {
	case 0:
		return "–"
	case 1:
		return num(v[0], prec)
	}
	return fmt.Sprintf("%s [%s – %s]", num(s.median(), prec), num(v[0], prec), num(v[len(v)-1], prec))
}

// num formats with prec decimals, and large values with thousands separators.
func num(f float64, prec int) string {
	if math.IsNaN(f) {
		return "–"
	}
	if math.Abs(f) >= 10000 {
		return thousands(int64(math.Round(f)))
	}
	return strconv.FormatFloat(f, 'f', prec, 64)
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// percentile of samples (nearest rank), p in [0, 100].
func percentile(samples []float64, p float64) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	v := slices.Clone(samples)
	slices.Sort(v)
	i := int(math.Ceil(p/100*float64(len(v)))) - 1
	return v[min(max(i, 0), len(v)-1)]
}
