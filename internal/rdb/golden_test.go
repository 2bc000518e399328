package rdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// goldenRDB maps hdt3213/expected-json/<name>.json to its RDB fixture.
func goldenRDB(dir, name string) string {
	switch name {
	case "hash":
		return "rdbtools/dictionary.rdb"
	case "stream_listpacks_1":
		return "replicator/dump-stream1.rdb"
	}
	for _, sub := range []string{"hdt3213", "rdbtools"} {
		p := sub + "/" + name + ".rdb"
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return p
		}
	}
	return ""
}

// goldenZone is the zone the golden files print expirations in (the generating tests
// set time.Local to CST).
var goldenZone = time.FixedZone("CST", 8*3600)

// asJSON turns decoded keys into the golden files' shape (minus "size"/"encoding").
func asGolden(f *decodedFile) []map[string]any {
	var out []map[string]any
	for _, k := range f.Keys {
		m := map[string]any{"db": k.DB, "key": k.Key}
		if k.ExpireAt >= 0 {
			m["expiration"] = time.UnixMilli(k.ExpireAt).In(goldenZone).Format(time.RFC3339Nano)
		}
		switch KindOf(f.Header.Flavor, k.Type) {
		case KindString:
			m["type"], m["value"] = "string", k.Elems[0].Member
		case KindList:
			vals := []string{}
			for _, e := range k.Elems {
				vals = append(vals, e.Member)
			}
			m["type"], m["values"] = "list", vals
		case KindSet:
			vals := []string{}
			for _, e := range k.Elems {
				vals = append(vals, e.Member)
			}
			sort.Strings(vals)
			m["type"], m["members"] = "set", vals
		case KindZSet:
			var ents []map[string]any
			for _, e := range k.Elems {
				ents = append(ents, map[string]any{"member": e.Member, "score": e.Score})
			}
			m["type"], m["entries"] = "zset", ents
		case KindHash:
			h, ex := map[string]string{}, map[string]int64{}
			hasTTL := false
			for _, e := range k.Elems {
				h[e.Member] = e.Value
				ex[e.Member] = max(e.ExpireAt, 0)
			}
			switch k.Type {
			case TypeHashMetadata, TypeHashListpackEx, TypeHashMetadataPreGA, TypeHashListpackExPre:
				hasTTL = true
			}
			m["type"], m["hash"] = "hash", h
			if hasTTL {
				m["expire"] = ex
			}
		case KindStream:
			m["type"] = "stream"
			streamGolden(m, k)
		}
		out = append(out, m)
	}
	for _, code := range f.Functions {
		out = append(out, map[string]any{"db": 0, "key": "functions", "type": "functions", "functionsLua": code})
	}
	return out
}

func streamGolden(m map[string]any, k decodedKey) {
	var msgs []map[string]any
	var groups []map[string]any
	var g, c map[string]any
	for _, e := range k.Elems {
		switch e.Kind {
		case ElemStreamEntry:
			fields := map[string]string{}
			for i := 0; i+1 < len(e.Fields); i += 2 {
				fields[e.Fields[i]] = e.Fields[i+1]
			}
			msgs = append(msgs, map[string]any{"id": e.ID.String(), "fields": fields})
		case ElemStreamMeta:
			m["len"], m["lastId"] = e.Meta.Length, e.Meta.LastID.String()
			if e.Meta.FromFile {
				m["firstId"], m["maxDeletedId"], m["addedEntriesCount"] = e.Meta.FirstID.String(), e.Meta.MaxDeletedID.String(), e.Meta.EntriesAdded
			}
		case ElemStreamGroup:
			g = map[string]any{"name": e.Group, "lastId": e.LastID.String()}
			if e.HasER {
				g["entriesRead"] = e.EntRead
			}
			groups = append(groups, g)
		case ElemStreamGroupPending:
			p, _ := g["pending"].([]map[string]any)
			g["pending"] = append(p, map[string]any{"id": e.ID.String(), "deliveryTime": e.DelTime, "deliveryCount": e.DelCount})
		case ElemStreamConsumer:
			c = map[string]any{"name": e.Consumer, "seenTime": e.Seen, "activeTime": e.Active}
			cs, _ := g["consumers"].([]map[string]any)
			g["consumers"] = append(cs, c)
		case ElemStreamConsumerPending:
			p, _ := c["pending"].([]string)
			c["pending"] = append(p, e.ID.String())
		}
	}
	m["msgs"] = msgs
	if len(groups) > 0 {
		m["groups"] = groups
	}
}

// normalizeGolden rewrites a golden object into asGolden's shape.
func normalizeGolden(o map[string]any) map[string]any {
	delete(o, "size")
	delete(o, "encoding")
	switch o["type"] {
	case "aux":
		return nil
	case "set":
		var v []string
		for _, x := range o["members"].([]any) {
			v = append(v, x.(string))
		}
		sort.Strings(v)
		o["members"] = v
	case "stream":
		var msgs []any
		if ents, ok := o["entries"].([]any); ok {
			for _, n := range ents {
				for _, mm := range n.(map[string]any)["msgs"].([]any) {
					msg := mm.(map[string]any)
					if msg["deleted"] == true {
						continue
					}
					delete(msg, "deleted")
					msgs = append(msgs, msg)
				}
			}
		}
		o["msgs"] = msgs
		delete(o, "entries")
		delete(o, "version")
		delete(o, "isV2")
	}
	return o
}

func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGoldenJSON(t *testing.T) {
	dir := fixtureDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "hdt3213", "expected-json", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, gf := range files {
		name := strings.TrimSuffix(filepath.Base(gf), ".json")
		t.Run(name, func(t *testing.T) {
			rdbName := goldenRDB(dir, name)
			if rdbName == "" {
				t.Fatalf("no RDB fixture for golden %s", name)
			}
			raw, err := os.ReadFile(gf)
			if err != nil {
				t.Fatal(err)
			}
			var golden []map[string]any
			if err := json.Unmarshal(raw, &golden); err != nil {
				t.Fatal(err)
			}
			var want []any
			for _, o := range golden {
				if n := normalizeGolden(o); n != nil {
					want = append(want, n)
				}
			}
			data := readFixture(t, rdbName)
			f, err := decodeAll(bytes.NewReader(data), Options{})
			if err != nil {
				t.Fatalf("decode %s: %v", rdbName, err)
			}
			got := jsonRoundTrip(t, asGolden(f))
			wantRT := jsonRoundTrip(t, want)
			if got == nil {
				got = []any{}
			}
			if wantRT == nil {
				wantRT = []any{}
			}
			if !reflect.DeepEqual(got, wantRT) {
				gs, ws := fmt.Sprint(got), fmt.Sprint(wantRT)
				i := 0
				for i < len(gs) && i < len(ws) && gs[i] == ws[i] {
					i++
				}
				lo := max(i-200, 0)
				t.Fatalf("decoding of %s differs from golden at char %d:\n got: …%s\nwant: …%s", rdbName, i,
					gs[lo:min(len(gs), i+200)], ws[lo:min(len(ws), i+200)])
			}
		})
	}
}
