package rdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"testing/iotest"
)

// syntheticSeeds are small files of every encoding, built in code.
func syntheticSeeds() [][]byte {
	var seeds [][]byte
	add := func(w *rdbBuilder, crc bool) { seeds = append(seeds, w.end(crc)) }
	lp := listpack("a", "1", 7, "b", int64(-1<<40), "c")
	add(newRDB("REDIS0011").aux("redis-ver", "7.2.0").byte1(opSelectDB).len(1).
		byte1(opExpireTimeMs).millis(1900000000000).key(TypeString, "s").str("value").
		key(TypeSetListpack, "sl").len(uint64(len(lp))).raw(lp).
		key(TypeZSetListpack, "zl").len(uint64(len(lp))).raw(lp).
		key(TypeListQuicklist2, "q").len(2).len(2).len(uint64(len(lp))).raw(lp).len(1).str("plain"), true)
	add(newRDB("REDIS0012").key(TypeHashListpackEx, "h").millis(5).len(uint64(len(lp))).raw(lp).
		key(TypeHashMetadata, "m").millis(10).len(1).len(3).str("f").str("v"), true)
	add(newRDB("VALKEY080").key(TypeValkeyHash2, "h").len(1).str("f").str("v").millis(-1).
		byte1(opSlotImport).str("job").len(1).len(0).len(5), true)
	add(newRDB("REDIS0003").byte1(opExpireTime).raw([]byte{1, 2, 3, 4}).key(TypeZSet, "z").len(2).
		str("a").byte1(3).raw([]byte("1.5")).str("b").byte1(254).
		key(TypeSetIntset, "i").len(12).raw([]byte{2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0}).
		key(TypeHashZipmap, "zm").len(9).raw([]byte{1, 1, 'a', 1, 0, 'b', 0xFF}), false)
	add(newRDB("REDIS0009").byte1(opIdle).len(10).byte1(opFreq).byte1(3).key(TypeModule2, "mod").
		len(12345<<10|1).len(moduleOpUInt).len(7).len(moduleOpString).str("x").len(moduleOpDouble).
		raw(make([]byte, 8)).len(moduleOpEOF).byte1(opModuleAux).len(99<<10).len(2).len(1).len(0), true)
	return seeds
}

// FuzzDecode feeds arbitrary bytes to every reader of the package: decoding never
// panics, every failure is an *Error, and memory stays proportional to the input (no
// allocation driven by a length field beyond the caps).
func FuzzDecode(f *testing.F) {
	for _, s := range syntheticSeeds() {
		f.Add(s)
	}
	dir, _ := filepath.Abs(filepath.Join("..", "..", "..", "shared", "fixtures", "rdb"))
	for _, sub := range []string{"valkey", "rdbtools", "hdt3213", "replicator"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			if info, err := e.Info(); err == nil && info.Size() <= 32<<10 && filepath.Ext(e.Name()) != ".json" {
				if b, err := os.ReadFile(filepath.Join(dir, sub, e.Name())); err == nil {
					f.Add(b)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for _, opts := range []Options{
			{MaxElementSize: 1 << 20, ChunkSize: 512},
			{Size: int64(len(data)), MaxElementSize: 1 << 20, BufferSize: 32},
		} {
			checkFuzzErr(t, fuzzIterate(data, opts))
			checkFuzzErr(t, decodeRaw(bytes.NewReader(data), opts))
		}
		_, err := Inspect(bytes.NewReader(data), InspectOptions{Decoder: Options{MaxElementSize: 1 << 20}})
		checkFuzzErr(t, err)
		// Differential: how the input arrives must not change what is decoded.
		big, errBig := decodeAll(bytes.NewReader(data), Options{MaxElementSize: 1 << 20})
		small, errSmall := decodeAll(iotest.OneByteReader(bytes.NewReader(data)), Options{MaxElementSize: 1 << 20, BufferSize: 16, ChunkSize: 5})
		if (errBig == nil) != (errSmall == nil) || (errBig == nil && !reflect.DeepEqual(big, small)) {
			t.Fatalf("one big read: %v; one byte at a time through a 16-byte buffer: %v", errBig, errSmall)
		}
		runtime.ReadMemStats(&ms1)
		if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 16<<20+uint64(len(data))*256 {
			t.Fatalf("%d bytes allocated for a %d-byte input", alloc, len(data))
		}
	})
}

func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if e.Error() == "" {
		t.Fatal("empty error text")
	}
}

// fuzzIterate decodes everything through iterators and the command path.
func fuzzIterate(data []byte, opts Options) error {
	d := NewDecoder(bytes.NewReader(data), opts)
	w := NewCommandWriter(CommandOptions{Target: Target{Redis, 12}, MaxElements: 3, MaxBytes: 64})
	n := 0
	for {
		e, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Record != RecordKey {
			continue
		}
		n++
		if e.Kind() == KindModule {
			continue
		}
		if n%2 == 0 { // alternate between the command path and plain iteration
			err := w.WriteValue(d, func(args [][]byte) error {
				if len(args) == 0 {
					return fmt.Errorf("empty command")
				}
				return nil
			})
			if errors.Is(err, ErrUnsupported) && !errors.Is(d.err, err) {
				continue // a value the command path refuses, decoding goes on
			}
			if err != nil {
				return err
			}
			continue
		}
		it, err := d.Iter()
		if err != nil {
			return err
		}
		for it.Next() {
		}
		if err := it.Err(); err != nil {
			return err
		}
	}
}
