package rdb

import (
	"container/heap"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// DefaultTopKeys is how many largest keys a Report lists by default.
const DefaultTopKeys = 10

// InspectOptions configure Inspect.
type InspectOptions struct {
	Decoder Options
	// TopKeys is how many of the largest keys to list; default DefaultTopKeys, -1 none.
	TopKeys int
	// Now is the reference for "already expired"; default time.Now().
	Now time.Time
}

// Report summarises an RDB file. It marshals to JSON as is.
type Report struct {
	Flavor   Flavor `json:"flavor"`
	Version  int    `json:"version"`
	Bytes    int64  `json:"bytes"`
	Checksum string `json:"checksum,omitempty"` // stored CRC64, hex; empty when absent or disabled
	// Aux fields in file order.
	Aux []AuxField `json:"aux"`
	// Keys is the number of keys emitted (empty collections excluded).
	Keys int64 `json:"keys"`
	// EmptyKeysSkipped counts empty collections, which Redis drops on load.
	EmptyKeysSkipped int64         `json:"empty_keys_skipped"`
	DBs              []DBReport    `json:"dbs"`
	Expiry           ExpiryStats   `json:"expiry"`
	LargestKeys      []KeyInfo     `json:"largest_keys"`
	Functions        []FunctionLib `json:"functions"`
	Modules          []ModuleInfo  `json:"modules"`
	SlotInfoRecords  int64         `json:"slot_info_records,omitempty"`
	SlotImports      int64         `json:"slot_imports,omitempty"`
}

// AuxField is one AUX record.
type AuxField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// DBReport counts one database's keys.
type DBReport struct {
	DB      int   `json:"db"`
	Keys    int64 `json:"keys"`
	Bytes   int64 `json:"bytes"` // raw value bytes
	Expires int64 `json:"expires"`
	// ResizeHint is the RESIZEDB record: [keys, keys with expiry] as the writer counted.
	ResizeHint *[2]uint64 `json:"resize_hint,omitempty"`
	// Types maps a data type ("hash") to its counts by on-disk encoding.
	Types map[string]*TypeCount `json:"types"`
}

// TypeCount counts keys of one data type.
type TypeCount struct {
	Keys      int64            `json:"keys"`
	Bytes     int64            `json:"bytes"`
	Encodings map[string]int64 `json:"encodings"` // upstream type name ("HASH_LISTPACK") → keys
}

// ExpiryStats counts keys with an expiry.
type ExpiryStats struct {
	WithTTL int64 `json:"with_ttl"`
	// Expired counts keys whose expiry had passed at InspectOptions.Now: a master
	// loading the file drops them.
	Expired  int64 `json:"already_expired"`
	Earliest int64 `json:"earliest_ms,omitempty"`
	Latest   int64 `json:"latest_ms,omitempty"`
}

// KeyInfo describes one key.
type KeyInfo struct {
	DB       int    `json:"db"`
	Key      string `json:"key"`
	Type     string `json:"type"`
	Encoding string `json:"encoding"`
	Bytes    int64  `json:"bytes"`
	ExpireAt int64  `json:"expire_at_ms,omitempty"`
	Module   string `json:"module,omitempty"`
}

// FunctionLib is one function library.
type FunctionLib struct {
	Library string `json:"library"`
	Engine  string `json:"engine"`
	Bytes   int    `json:"bytes"`
}

// ModuleInfo is a module whose data the file holds.
type ModuleInfo struct {
	Name    string `json:"name"`
	Version int    `json:"encoding_version"`
	Keys    int64  `json:"keys"`
	Aux     bool   `json:"aux"` // has MODULE_AUX data
}

// keyHeap is a min-heap by size, holding the largest keys seen.
type keyHeap []KeyInfo

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i].Bytes < h[j].Bytes }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(KeyInfo)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Inspect reads a whole RDB stream and summarises it. Values are walked, not decoded,
// so it runs at the decoder's skipping speed in constant memory.
func Inspect(r io.Reader, opts InspectOptions) (*Report, error) {
	top := opts.TopKeys
	if top == 0 {
		top = DefaultTopKeys
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	nowMs := now.UnixMilli()
	d := NewDecoder(r, opts.Decoder)
	rep := &Report{Aux: []AuxField{}, DBs: []DBReport{}, LargestKeys: []KeyInfo{}, Functions: []FunctionLib{}, Modules: []ModuleInfo{}}
	dbs := map[int]*DBReport{}
	mods := map[string]*ModuleInfo{}
	module := func(name string, ver int) *ModuleInfo {
		m := mods[name]
		if m == nil {
			m = &ModuleInfo{Name: name, Version: ver}
			mods[name] = m
		}
		return m
	}
	var largest keyHeap
	for {
		e, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, err
		}
		switch e.Record {
		case RecordAux:
			rep.Aux = append(rep.Aux, AuxField{string(e.Key), string(e.Value)})
			continue
		case RecordFunction:
			rep.Functions = append(rep.Functions, FunctionLib{string(e.Key), e.Engine, len(e.Value)})
			continue
		case RecordModuleAux:
			module(e.Module, e.ModuleVersion).Aux = true
			continue
		}
		size, err := d.SkipValue()
		if err != nil {
			return rep, err
		}
		rep.Keys++
		db := dbs[e.DB]
		if db == nil {
			db = &DBReport{DB: e.DB, Types: map[string]*TypeCount{}}
			dbs[e.DB] = db
		}
		db.Keys++
		db.Bytes += size
		kind := e.Kind().String()
		tc := db.Types[kind]
		if tc == nil {
			tc = &TypeCount{Encodings: map[string]int64{}}
			db.Types[kind] = tc
		}
		tc.Keys++
		tc.Bytes += size
		tc.Encodings[TypeName(e.Flavor, e.Type)]++
		if e.Module != "" {
			module(e.Module, e.ModuleVersion).Keys++
		}
		if e.ExpireAt >= 0 {
			db.Expires++
			x := &rep.Expiry
			if x.WithTTL == 0 || e.ExpireAt < x.Earliest {
				x.Earliest = e.ExpireAt
			}
			if x.WithTTL == 0 || e.ExpireAt > x.Latest {
				x.Latest = e.ExpireAt
			}
			x.WithTTL++
			if e.ExpireAt <= nowMs {
				x.Expired++
			}
		}
		if top > 0 && (len(largest) < top || size > largest[0].Bytes) {
			ki := KeyInfo{DB: e.DB, Key: string(e.Key), Type: kind, Encoding: TypeName(e.Flavor, e.Type),
				Bytes: size, Module: e.Module}
			if e.ExpireAt >= 0 {
				ki.ExpireAt = e.ExpireAt
			}
			if len(largest) < top {
				heap.Push(&largest, ki)
			} else {
				largest[0] = ki
				heap.Fix(&largest, 0)
			}
		}
	}
	h, st := d.Header(), d.Stats()
	rep.Flavor, rep.Version, rep.Bytes = h.Flavor, h.Version, d.Offset()
	if st.Checksum != 0 {
		rep.Checksum = fmt.Sprintf("%016x", st.Checksum)
	}
	rep.EmptyKeysSkipped, rep.SlotInfoRecords, rep.SlotImports = st.EmptyKeys, st.SlotInfo, st.SlotImports
	for _, db := range dbs {
		if hint, ok := st.Resize[db.DB]; ok {
			db.ResizeHint = &hint
		}
		rep.DBs = append(rep.DBs, *db)
	}
	sort.Slice(rep.DBs, func(i, j int) bool { return rep.DBs[i].DB < rep.DBs[j].DB })
	rep.LargestKeys = append(rep.LargestKeys, largest...)
	sort.SliceStable(rep.LargestKeys, func(i, j int) bool { return rep.LargestKeys[i].Bytes > rep.LargestKeys[j].Bytes })
	for _, m := range mods {
		rep.Modules = append(rep.Modules, *m)
	}
	sort.Slice(rep.Modules, func(i, j int) bool { return rep.Modules[i].Name < rep.Modules[j].Name })
	return rep, nil
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	magic := fmt.Sprintf("REDIS%04d", r.Version)
	if r.Flavor == Valkey {
		magic = fmt.Sprintf("VALKEY%03d", r.Version)
	}
	p("format\t%s (%s RDB v%d)\n", magic, r.Flavor, r.Version)
	p("size\t%s\n", humanBytes(r.Bytes))
	switch {
	case r.Checksum != "":
		p("checksum\tCRC64 %s (verified)\n", r.Checksum)
	case r.Flavor == Redis && r.Version < 5:
		p("checksum\tnone (RDB < v5)\n")
	default:
		p("checksum\tdisabled by the writer\n")
	}
	for _, a := range r.Aux {
		p("aux %s\t%s\n", a.Name, printable(a.Value, 80))
	}
	p("keys\t%d", r.Keys)
	if r.EmptyKeysSkipped > 0 {
		p(" (+%d empty collections, skipped as Redis does)", r.EmptyKeysSkipped)
	}
	p("\n")
	for _, db := range r.DBs {
		p("db %d\t%d keys, %d with expiry, %s of values\n", db.DB, db.Keys, db.Expires, humanBytes(db.Bytes))
		kinds := make([]string, 0, len(db.Types))
		for k := range db.Types {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			tc := db.Types[k]
			encs := make([]string, 0, len(tc.Encodings))
			for e, n := range tc.Encodings {
				encs = append(encs, e+" "+strconv.FormatInt(n, 10))
			}
			sort.Strings(encs)
			p("  %s\t%d keys, %s\t%s\n", k, tc.Keys, humanBytes(tc.Bytes), strings.Join(encs, ", "))
		}
	}
	if x := r.Expiry; x.WithTTL > 0 {
		p("expiry\t%d keys with TTL, %d already expired, %s … %s\n", x.WithTTL, x.Expired,
			time.UnixMilli(x.Earliest).UTC().Format(time.RFC3339), time.UnixMilli(x.Latest).UTC().Format(time.RFC3339))
	}
	for _, f := range r.Functions {
		p("function\t%s (%s, %s)\n", f.Library, f.Engine, humanBytes(int64(f.Bytes)))
	}
	for _, m := range r.Modules {
		what := fmt.Sprintf("%d keys", m.Keys)
		if m.Aux {
			what += ", aux data"
		}
		p("module\t%s (encoding version %d): %s\n", m.Name, m.Version, what)
	}
	if r.SlotInfoRecords > 0 || r.SlotImports > 0 {
		p("cluster\t%d SLOT_INFO records, %d slot imports\n", r.SlotInfoRecords, r.SlotImports)
	}
	if len(r.LargestKeys) > 0 {
		p("largest keys\n")
		for _, k := range r.LargestKeys {
			p("  %s\tdb %d, %s %s\t%s\n", printable(k.Key, 60), k.DB, k.Type, k.Encoding, humanBytes(k.Bytes))
		}
	}
	return tw.Flush()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// printable quotes s when it is not plain text and shortens it to max runes.
func printable(s string, max int) string {
	q := strconv.Quote(s)
	if q[1:len(q)-1] == s && !strings.ContainsAny(s, " \t") {
		q = s
	}
	if r := []rune(q); len(r) > max {
		q = string(r[:max]) + "…"
	}
	return q
}
