package rdb

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// benchFiles caches RDBs made by redis-server across the benchmark's b.N rounds.
var benchFiles sync.Map

// savedRDB fills a fresh redis-server with fill, SAVEs and returns the dump.
func savedRDB(b *testing.B, name string, fill func(p *pipe, s *testutil.Server)) []byte {
	if v, ok := benchFiles.Load(name); ok {
		return v.([]byte)
	}
	s := testutil.StartServer(b)
	fill(newPipe(b, s.Conn(b)), s)
	s.Do(b, "SAVE")
	data, err := os.ReadFile(filepath.Join(s.Dir(), "dump.rdb"))
	if err != nil {
		b.Fatal(err)
	}
	s.Stop()
	b.Logf("%s RDB from redis-server: %.1f MiB", name, float64(len(data))/(1<<20))
	benchFiles.Store(name, data)
	return data
}

// stringRDB: 200k strings of 100 bytes (DEBUG POPULATE pads with zeros, so most are
// LZF-compressed, as real RDBs with compressible values are) and 20k random-ish
// 1 KiB values that do not compress.
func stringRDB(b *testing.B) []byte {
	return savedRDB(b, "strings", func(p *pipe, s *testutil.Server) {
		s.Do(b, "DEBUG", "POPULATE", "200000", "key", "100")
		val := make([]byte, 1024)
		for i := 0; i < 20000; i++ {
			for j := range val {
				val[j] = byte(i*31 + j*j*7 + j>>3)
			}
			p.send([][]byte{[]byte("SET"), fmt.Appendf(nil, "blob:%d", i), val})
		}
		p.finish()
	})
}

// collectionRDB: hashes, zsets, lists and sets, small (listpack/intset encoded) and
// large (hashtable, skiplist, multi-node quicklist), plus streams.
func collectionRDB(b *testing.B) []byte {
	return savedRDB(b, "collections", func(p *pipe, s *testutil.Server) {
		for i := 0; i < 4000; i++ {
			n := 20
			if i%20 == 0 {
				n = 600 // past the listpack limits: hashtable / skiplist encodings
			}
			h := [][]byte{[]byte("HSET"), fmt.Appendf(nil, "h:%d", i)}
			z := [][]byte{[]byte("ZADD"), fmt.Appendf(nil, "z:%d", i)}
			l := [][]byte{[]byte("RPUSH"), fmt.Appendf(nil, "l:%d", i)}
			st := [][]byte{[]byte("SADD"), fmt.Appendf(nil, "s:%d", i)}
			si := [][]byte{[]byte("SADD"), fmt.Appendf(nil, "si:%d", i)}
			for j := 0; j < n; j++ {
				h = append(h, fmt.Appendf(nil, "field-%d", j), fmt.Appendf(nil, "value-%d-%d", i, j))
				z = append(z, fmt.Appendf(nil, "%d.5", j), fmt.Appendf(nil, "member-%d", j))
				l = append(l, fmt.Appendf(nil, "element-%d-%d", i, j))
				st = append(st, fmt.Appendf(nil, "m-%d", j))
				si = append(si, fmt.Appendf(nil, "%d", j*1000))
			}
			p.send(h)
			p.send(z)
			p.send(l)
			p.send(st)
			p.send(si)
			if i%10 == 0 {
				for j := 0; j < 50; j++ {
					p.sendStrings("XADD", fmt.Sprintf("x:%d", i), "*", "f", fmt.Sprint(j), "g", "v")
				}
				p.sendStrings("XGROUP", "CREATE", fmt.Sprintf("x:%d", i), "g", "0")
				p.sendStrings("XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "STREAMS", fmt.Sprintf("x:%d", i), ">")
			}
		}
		p.finish()
	})
}

type benchMode int

const (
	modeSkip      benchMode = iota // Next only: values skipped
	modeRaw                        // Raw view of every value
	modeIter                       // every element decoded
	modeBuild                      // Raw and a RESTORE payload hashed again (Build)
	modeBuildFrom                  // Raw and a RESTORE payload with the derived CRC (BuildFrom)
)

func benchDecode(b *testing.B, data []byte, mode benchMode) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	var p Payload
	for i := 0; i < b.N; i++ {
		d := NewDecoder(bytes.NewReader(data), Options{Size: int64(len(data))})
		for {
			e, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if e.Record != RecordKey {
				continue
			}
			switch mode {
			case modeRaw:
				if _, ok, err := d.Raw(1 << 20); !ok || err != nil {
					b.Fatal(ok, err)
				}
			case modeBuild, modeBuildFrom:
				raw, ok, err := d.Raw(1 << 20)
				if !ok || err != nil {
					b.Fatal(ok, err)
				}
				if mode == modeBuild {
					p.Build(e.Type, raw, 10)
				} else {
					p.BuildFrom(d, e.Type, raw, 10)
				}
			case modeIter:
				it, err := d.Iter()
				if err != nil {
					b.Fatal(err)
				}
				for it.Next() {
				}
				if err := it.Err(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

func BenchmarkDecodeStringsSkip(b *testing.B)     { benchDecode(b, stringRDB(b), modeSkip) }
func BenchmarkDecodeStringsRaw(b *testing.B)      { benchDecode(b, stringRDB(b), modeRaw) }
func BenchmarkDecodeStringsIter(b *testing.B)     { benchDecode(b, stringRDB(b), modeIter) }
func BenchmarkDecodeCollectionsSkip(b *testing.B) { benchDecode(b, collectionRDB(b), modeSkip) }
func BenchmarkDecodeCollectionsRaw(b *testing.B)  { benchDecode(b, collectionRDB(b), modeRaw) }
func BenchmarkDecodeCollectionsIter(b *testing.B) { benchDecode(b, collectionRDB(b), modeIter) }

// The RESTORE path's decoding cost, with the payload's CRC64 computed again (Build) and
// derived from the file's running checksum (BuildFrom).
func BenchmarkPayloadsStringsBuild(b *testing.B)     { benchDecode(b, stringRDB(b), modeBuild) }
func BenchmarkPayloadsStringsBuildFrom(b *testing.B) { benchDecode(b, stringRDB(b), modeBuildFrom) }
func BenchmarkPayloadsCollectionsBuild(b *testing.B) { benchDecode(b, collectionRDB(b), modeBuild) }
func BenchmarkPayloadsCollectionsBuildFrom(b *testing.B) {
	benchDecode(b, collectionRDB(b), modeBuildFrom)
}

// BenchmarkCommandPath measures value → commands for the collection file.
func BenchmarkCommandPath(b *testing.B) {
	data := collectionRDB(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cmds := 0
	for i := 0; i < b.N; i++ {
		d := NewDecoder(bytes.NewReader(data), Options{Size: int64(len(data))})
		w := NewCommandWriter(CommandOptions{Target: redis70})
		for {
			e, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if e.Record != RecordKey {
				continue
			}
			if err := w.WriteValue(d, func([][]byte) error { cmds++; return nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(cmds)/float64(b.N), "cmds/file")
}

// BenchmarkPayloadBuild: a RESTORE payload and its command, from a raw value, per key.
func BenchmarkPayloadBuild(b *testing.B) {
	raw := bytes.Repeat([]byte("v"), 200)
	key := []byte("some:key:12345")
	var p Payload
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		payload := p.Build(TypeString, raw, 10)
		args := p.RestoreArgs(key, payload, 1900000000000+int64(i), 30, -1)
		if len(args) != 8 {
			b.Fatal(len(args))
		}
	}
}

// TestPayloadBuildFromAllocs: deriving the CRC allocates nothing either.
func TestPayloadBuildFromAllocs(t *testing.T) {
	var src bytes.Buffer
	src.WriteString("REDIS0011")
	for i := range 200 {
		src.Write([]byte{0, 1, byte('a' + i%26), 60})
		src.Write(bytes.Repeat([]byte{byte(i)}, 60))
	}
	src.WriteByte(0xff)
	src.Write(make([]byte, 8)) // checksum 0: not verified
	data := src.Bytes()
	d := NewDecoder(bytes.NewReader(data), Options{})
	var p Payload
	next := func() {
		e, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		raw, ok, err := d.Raw(1 << 20)
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		p.RestoreArgs(e.Key, p.BuildFrom(d, e.Type, raw, 10), 1900000000000, 30, -1)
		if d.rawSum.raw == nil {
			t.Fatal("the payload's CRC was not derived")
		}
	}
	next() // warm-up
	if allocs := testing.AllocsPerRun(100, next); allocs != 0 {
		t.Fatalf("%v allocations per payload", allocs)
	}
}

func TestPayloadBuildAllocs(t *testing.T) {
	raw := bytes.Repeat([]byte("v"), 200)
	key := []byte("k")
	var p Payload
	p.RestoreArgs(key, p.Build(TypeString, raw, 10), 1, 1, -1) // warm-up
	allocs := testing.AllocsPerRun(100, func() {
		p.RestoreArgs(key, p.Build(TypeString, raw, 10), 1900000000000, 30, -1)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per payload", allocs)
	}
}
