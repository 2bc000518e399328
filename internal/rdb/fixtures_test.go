package rdb

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"testing/iotest"
)

// fixtureDir finds the shared byte-exact RDB fixtures (/work/shared/fixtures/rdb),
// which live outside the repository. Tests that need them skip without them.
func fixtureDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "fixtures", "rdb"))
	if err == nil {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
	}
	t.Skipf("RDB fixtures not found at %s (../../../shared/fixtures/rdb relative to the package); these tests need the shared fixture set", dir)
	return ""
}

// fixtureFiles lists every RDB/AOF fixture as "origin/name".
func fixtureFiles(t testing.TB) []string {
	dir := fixtureDir(t)
	var out []string
	for _, sub := range []string{"valkey", "rdbtools", "hdt3213", "replicator"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".rdb") || strings.HasSuffix(e.Name(), ".aof") {
				out = append(out, sub+"/"+e.Name())
			}
		}
	}
	sort.Strings(out)
	return out
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodedKey is a fully decoded key, for comparisons.
type decodedKey struct {
	DB       int
	Key      string
	Type     Type
	ExpireAt int64
	Idle     int64
	Freq     int
	Module   string
	Elems    []decodedElem
}

type decodedElem struct {
	Kind     ElemKind
	Member   string
	Value    string
	Score    float64
	ExpireAt int64
	ID       StreamID
	Fields   []string
	Meta     StreamMeta
	Group    string
	LastID   StreamID
	EntRead  int64
	HasER    bool
	Consumer string
	Seen     int64
	Active   int64
	DelTime  int64
	DelCount uint64
}

type decodedFile struct {
	Header    Header
	Aux       map[string]string
	Functions []string
	ModAux    []string
	Keys      []decodedKey
	Stats     Stats
}

// decodeAll decodes every record with the element iterator.
func decodeAll(r io.Reader, opts Options) (*decodedFile, error) {
	d := NewDecoder(r, opts)
	out := &decodedFile{Aux: map[string]string{}}
	for {
		e, err := d.Next()
		if err == io.EOF {
			out.Header, out.Stats = d.Header(), d.Stats()
			return out, nil
		}
		if err != nil {
			return out, err
		}
		switch e.Record {
		case RecordAux:
			out.Aux[string(e.Key)] = string(e.Value)
			continue
		case RecordFunction:
			out.Functions = append(out.Functions, string(e.Value))
			continue
		case RecordModuleAux:
			out.ModAux = append(out.ModAux, e.Module)
			continue
		}
		k := decodedKey{DB: e.DB, Key: string(e.Key), Type: e.Type, ExpireAt: e.ExpireAt, Idle: e.Idle, Freq: e.Freq, Module: e.Module}
		if e.Kind() == KindModule {
			if _, err := d.SkipValue(); err != nil {
				return out, err
			}
			out.Keys = append(out.Keys, k)
			continue
		}
		it, err := d.Iter()
		if err != nil {
			return out, err
		}
		var str []byte
		for it.Next() {
			el := it.Elem()
			if el.Kind == ElemChunk {
				str = append(str, el.Member...)
				continue
			}
			de := decodedElem{Kind: el.Kind, Member: string(el.Member), Value: string(el.Value), Score: el.Score,
				ExpireAt: el.ExpireAt, ID: el.ID}
			for _, f := range el.Fields {
				de.Fields = append(de.Fields, string(f))
			}
			switch el.Kind {
			case ElemStreamMeta:
				de.Meta = el.Meta
			case ElemStreamGroup:
				de.Group, de.LastID, de.EntRead, de.HasER = string(el.Group.Name), el.Group.LastID, el.Group.EntriesRead, !el.Group.Estimated
			case ElemStreamConsumer:
				de.Group, de.Consumer, de.Seen, de.Active = string(el.Consumer.Group), string(el.Consumer.Name), el.Consumer.SeenTime, el.Consumer.ActiveTime
			case ElemStreamGroupPending, ElemStreamConsumerPending:
				de.Group, de.Consumer, de.ID, de.DelTime, de.DelCount = string(el.Pending.Group), string(el.Pending.Consumer), el.Pending.ID, el.Pending.DeliveryTime, el.Pending.DeliveryCount
			}
			k.Elems = append(k.Elems, de)
		}
		if err := it.Err(); err != nil {
			return out, err
		}
		if e.Kind() == KindString {
			k.Elems = []decodedElem{{Kind: ElemChunk, Member: string(str)}}
		}
		out.Keys = append(out.Keys, k)
	}
}

// Fixtures that must fail, and with which cause.
var negativeFixtures = map[string]error{
	"valkey/corrupt_ziplist.rdb": ErrCorrupt,
	"replicator/module.rdb":      ErrUnsupported,
}

func TestFixturesDecode(t *testing.T) {
	for _, name := range fixtureFiles(t) {
		t.Run(name, func(t *testing.T) {
			data := readFixture(t, name)
			f, err := decodeAll(bytes.NewReader(data), Options{Size: int64(len(data))})
			if want, neg := negativeFixtures[name]; neg {
				if err == nil || !errors.Is(err, want) {
					t.Fatalf("want error %v, got %v", want, err)
				}
				t.Logf("expected failure: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			t.Logf("%s v%d: %d keys, %d functions, empty skipped %d", f.Header.Flavor, f.Header.Version, len(f.Keys), len(f.Functions), f.Stats.EmptyKeys)
		})
	}
}

// TestSmallBuffersAndReads decodes every fixture through tiny buffers and readers that
// return one byte (or half the asked bytes) at a time, and requires the same result as
// with one big read: no parser may keep a slice across a buffer refill.
func TestSmallBuffersAndReads(t *testing.T) {
	for _, name := range fixtureFiles(t) {
		if _, neg := negativeFixtures[name]; neg || name == "replicator/dumpV8.rdb" {
			continue
		}
		data := readFixture(t, name)
		want, err := decodeAll(bytes.NewReader(data), Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, tc := range []struct {
			what string
			r    io.Reader
			opts Options
		}{
			{"16-byte buffer", bytes.NewReader(data), Options{BufferSize: 16}},
			{"one-byte reads", iotest.OneByteReader(bytes.NewReader(data)), Options{BufferSize: 100}},
			{"half reads, sized", iotest.HalfReader(bytes.NewReader(data)), Options{BufferSize: 37, Size: int64(len(data))}},
			{"small chunks", bytes.NewReader(data), Options{BufferSize: 64, ChunkSize: 7}},
		} {
			got, err := decodeAll(tc.r, tc.opts)
			if err != nil {
				t.Fatalf("%s with %s: %v", name, tc.what, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s with %s: decoding differs", name, tc.what)
			}
		}
	}
}
