package verify

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// summaryKeys is how many differing keys the summary names.
const summaryKeys = 20

// WriteSummary writes the human summary of a run: what each round did, the differences
// remaining by class, the first of them, and the repair's outcome.
func (r *Result) WriteSummary(w io.Writer) error {
	var b strings.Builder
	dbs := make([]string, len(r.SourceDBs))
	for i, db := range r.SourceDBs {
		dbs[i] = fmt.Sprint(db)
	}
	mode := r.Mode.String()
	if r.Sampled {
		mode += ", sampled"
	}
	fmt.Fprintf(&b, "verify: mode %s, source dbs %s\n", mode, strings.Join(dbs, ","))
	for _, st := range r.Rounds {
		fmt.Fprintf(&b, "round %d (%s): ", st.N, st.Kind)
		if st.Kind == "full" || st.Kind == "sample" {
			fmt.Fprintf(&b, "%d source keys compared, %d destination keys checked", st.Keys, st.Extra)
		} else {
			fmt.Fprintf(&b, "%d keys re-checked", st.Keys)
		}
		fmt.Fprintf(&b, ", %d differ (%s", st.Diffs, st.Elapse.Round(time.Millisecond))
		if st.Keys > 0 && st.Elapse > 0 && st.Kind != "recheck" && st.Kind != "confirm" {
			fmt.Fprintf(&b, ", %.0f keys/s", float64(st.Keys+st.Extra)/st.Elapse.Seconds())
		}
		if f := st.Fence; f != nil {
			if f.Reached {
				fmt.Fprintf(&b, "; fenced on %s at offsets %v, waited %s", strings.Join(f.Replicas, ","), f.Offsets, f.Waited.Round(time.Millisecond))
			} else {
				fmt.Fprintf(&b, "; fence NOT reached on %s in time, compared unfenced", strings.Join(f.Replicas, ","))
			}
		}
		b.WriteString(")\n")
		if st.Whole+st.Digest+st.Elements > 0 && (st.Kind == "full" || st.Kind == "sample") {
			fmt.Fprintf(&b, "  values: %d read whole, %d by digest, %d element by element\n", st.Whole, st.Digest, st.Elements)
		}
		if st.Uncomp > 0 {
			fmt.Fprintf(&b, "  %d keys of module types not value-compared (DEBUG DIGEST-VALUE unavailable)\n", st.Uncomp)
		}
	}
	if e := r.SampleEstimate; e != nil {
		fmt.Fprintf(&b, "sample: %d of %d source keys, %d of %d destination keys; about %d keys differ in all (estimate)\n",
			e.SourceSampled, e.SourceKeys, e.TargetSampled, e.TargetKeys, e.Differing())
	}
	if r.Found != nil && len(r.Rounds) > 0 && r.Rounds[len(r.Rounds)-1].Kind == "confirm" {
		s := r.Repairs
		fmt.Fprintf(&b, "repair: %d restored, %d rewritten with commands, %d TTLs fixed, %d deleted, %d skipped, %d failed\n",
			s.Restored, s.Rewritten, s.TTLFixed, s.Deleted, s.Skipped, s.Failed)
	}
	if r.Clean() {
		b.WriteString("result: no differences\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "result: %d keys differ\n", len(r.Remaining)+int(r.Overflow))
	counts := r.Counts()
	for _, c := range Classes {
		if counts[c] > 0 {
			fmt.Fprintf(&b, "  %-24s %d\n", c.Describe(), counts[c])
		}
	}
	inFlight := 0
	for _, d := range r.Remaining {
		if d.InFlight {
			inFlight++
		}
	}
	if inFlight > 0 {
		fmt.Fprintf(&b, "  %d of them changed on the source during the last round: they may be writes in flight\n"+
			"  rather than lost ones; verify them again when writes pause (in_flight in the report)\n", inFlight)
	}
	if r.Overflow > 0 {
		fmt.Fprintf(&b, "  %-24s %d (beyond the cap of kept differences; not re-checked)\n", "more", r.Overflow)
	}
	for i, d := range r.Remaining {
		if i == summaryKeys {
			fmt.Fprintf(&b, "  … and %d more (see --report)\n", len(r.Remaining)-summaryKeys)
			break
		}
		db := fmt.Sprint(d.DB)
		if d.TargetDB != d.DB {
			db = fmt.Sprintf("%d→%d", d.DB, d.TargetDB)
		}
		flight := ""
		if d.InFlight {
			flight = " (changing on the source)"
		}
		key := quoteKey(d.Key)
		if d.TargetKey != "" {
			key += " (destination " + quoteKey(d.TargetKey) + ")"
		}
		fmt.Fprintf(&b, "  db %s %s: %s%s: %s\n", db, key, d.Class, flight, d.Detail)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
