package throttle

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// PhaseState is one phase's limiter as the HTTP handler shows it.
type PhaseState struct {
	Limits    Limits  `json:"limits"`
	Throttled bool    `json:"throttled"`
	Reason    string  `json:"reason,omitempty"`
	Delayed   float64 `json:"delayed_seconds"`
}

// limitsPatch is a change request: a field left out keeps its value, 0 lifts the limit.
type limitsPatch struct {
	MaxOps   *int64     `json:"max_ops"`
	MaxBytes *byteValue `json:"max_bytes"`
}

// byteValue is a byte rate given as a number or as a string with a unit ("64MiB").
type byteValue int64

func (b *byteValue) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		n, err := ParseBytes(s)
		if err != nil {
			return err
		}
		*b = byteValue(n)
		return nil
	}
	n, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return fmt.Errorf("max_bytes: want a whole number of bytes or a string such as \"64MiB\", not %s", data)
	}
	*b = byteValue(n)
	return nil
}

// Handler serves the limiters of a task's phases (keyed by phase name, such as "full" and
// "incremental"), for the status endpoint:
//
//	GET  → {"full": {"limits": {"max_ops": 50000, "max_bytes": 0}, "throttled": true,
//	         "reason": "throttled: max-ops 50000", "delayed_seconds": 12.5}, ...}
//	PUT or POST {"incremental": {"max_ops": 5000}} → changes the named fields at once (a
//	         field left out keeps its value; 0 lifts that limit), then answers as GET.
//
// A request naming an unknown phase or field, or a negative limit, changes nothing and is
// answered 400 with the reason.
func Handler(phases map[string]*Limiter) http.Handler {
	names := make([]string, 0, len(phases))
	for n := range phases {
		names = append(names, n)
	}
	slices.Sort(names)
	state := func(w http.ResponseWriter) {
		out := make(map[string]PhaseState, len(phases))
		for n, l := range phases {
			s := l.Stats()
			out[n] = PhaseState{Limits: s.Limits, Throttled: l.Throttled(), Reason: l.Reason(), Delayed: s.Delayed.Seconds()}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			state(w)
			return
		case http.MethodPut, http.MethodPost:
		default:
			w.Header().Set("Allow", "GET, PUT, POST")
			http.Error(w, "use GET to read the throttle, PUT to change it", http.StatusMethodNotAllowed)
			return
		}
		var req map[string]limitsPatch
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, fmt.Sprintf("throttle change: %v (want e.g. {\"incremental\": {\"max_ops\": 5000, \"max_bytes\": \"64MiB\"}})", err), http.StatusBadRequest)
			return
		}
		// Check everything before changing anything.
		next := make(map[string]Limits, len(req))
		for n, p := range req {
			l, ok := phases[n]
			if !ok {
				http.Error(w, fmt.Sprintf("throttle change: no phase %q (phases: %s)", n, strings.Join(names, ", ")), http.StatusBadRequest)
				return
			}
			lim := l.Limits()
			if p.MaxOps != nil {
				lim.MaxOps = *p.MaxOps
			}
			if p.MaxBytes != nil {
				lim.MaxBytes = int64(*p.MaxBytes)
			}
			if err := lim.Validate(); err != nil {
				http.Error(w, fmt.Sprintf("throttle change for %s: %v", n, err), http.StatusBadRequest)
				return
			}
			next[n] = lim
		}
		for n, lim := range next {
			_ = phases[n].SetLimits(lim) // validated above
		}
		state(w)
	})
}
