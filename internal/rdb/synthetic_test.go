package rdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

func decodeBytes(t *testing.T, data []byte) *decodedFile {
	t.Helper()
	f, err := decodeAll(bytes.NewReader(data), Options{Size: int64(len(data))})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return f
}

func TestExpireTimeSecondsOpcode(t *testing.T) {
	at := time.Now().Add(time.Hour).Unix()
	w := newRDB("REDIS0002")
	w.byte1(opSelectDB).len(3)
	w.byte1(opExpireTime).raw([]byte{byte(at), byte(at >> 8), byte(at >> 16), byte(at >> 24)})
	w.key(TypeString, "k").str("v")
	w.key(TypeString, "no-ttl").str("w")
	data := w.end(false)
	f := decodeBytes(t, data)
	if len(f.Keys) != 2 || f.Keys[0].ExpireAt != at*1000 || f.Keys[0].DB != 3 || f.Keys[1].ExpireAt != -1 {
		t.Fatalf("keys %+v, want k expiring at %d in db 3 and no-ttl without expiry", f.Keys, at*1000)
	}

	// The expiry reaches a real server through RESTORE … ABSTTL.
	s := testutil.StartServer(t)
	loadFile(t, data, newPipe(t, s.Conn(t)), restoreLoader())
	s.Do(t, "SELECT", "3")
	if v := s.Do(t, "PEXPIRETIME", "k"); v.Int != at*1000 {
		t.Fatalf("PEXPIRETIME %d, want %d", v.Int, at*1000)
	}
	s.Do(t, "SELECT", "0")
}

func TestHashFieldTTLPreGA(t *testing.T) {
	t1, t2 := int64(1900000000000), int64(1900000000500)
	w := newRDB("REDIS0012")
	// HASH_METADATA_PRE_GA: count, then (absolute ttl, field, value); ttl 0 = none.
	w.key(TypeHashMetadataPreGA, "meta").len(3)
	w.len(uint64(t1)).str("f1").str("v1")
	w.len(0).str("f2").str("v2")
	w.len(uint64(t2)).str("f3").str("v3")
	// HASH_LISTPACK_EX_PRE_GA: a listpack of (field, value, ttl) without the min-expire
	// prefix of the GA type.
	lp := listpack("a", "1", t2, "b", "2", 0)
	w.key(TypeHashListpackExPre, "lpex").len(uint64(len(lp))).raw(lp)
	// HASH_LISTPACK_EX (GA): min expire first.
	w.key(TypeHashListpackEx, "lpex-ga").millis(t1).len(uint64(len(lp))).raw(lp)
	// HASH_METADATA (GA): min expire, then ttl relative to it plus one.
	w.key(TypeHashMetadata, "meta-ga").millis(t1).len(2)
	w.len(uint64(t2 - t1 + 1)).str("x").str("1")
	w.len(0).str("y").str("2")
	data := w.end(true)

	f := decodeBytes(t, data)
	got := map[string]string{}
	for _, k := range f.Keys {
		var parts []string
		for _, e := range k.Elems {
			parts = append(parts, fmt.Sprintf("%s=%s@%d", e.Member, e.Value, e.ExpireAt))
		}
		got[k.Key] = strings.Join(parts, " ")
	}
	want := map[string]string{
		"meta":    fmt.Sprintf("f1=v1@%d f2=v2@-1 f3=v3@%d", t1, t2),
		"lpex":    fmt.Sprintf("a=1@%d b=2@-1", t2),
		"lpex-ga": fmt.Sprintf("a=1@%d b=2@-1", t2),
		"meta-ga": fmt.Sprintf("x=1@%d y=2@-1", t2),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}

	// Command path: to Redis 7.4+ the TTLs become HPEXPIREAT grouped by time.
	cmds := commandsFor(t, data, "meta", CommandOptions{Target: Target{Redis, 12}})
	wantCmds := []string{
		"DEL meta",
		"HSET meta f1 v1 f2 v2 f3 v3",
		fmt.Sprintf("HPEXPIREAT meta %d FIELDS 1 f1", t1),
		fmt.Sprintf("HPEXPIREAT meta %d FIELDS 1 f3", t2),
	}
	if strings.Join(cmds, "\n") != strings.Join(wantCmds, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(wantCmds, "\n"))
	}
	// Into Redis 7.0 field TTLs cannot be kept: an error unless asked to drop them.
	d := NewDecoder(bytes.NewReader(data), Options{})
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	err := NewCommandWriter(CommandOptions{Target: redis70}).WriteValue(d, func([][]byte) error { return nil })
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "DropFieldTTLs") {
		t.Errorf("field TTLs into Redis 7.0: got %v, want ErrUnsupported", err)
	}
	// The refusal is not fatal: decoding goes on with the next key.
	if e, err := d.Next(); err != nil || string(e.Key) != "lpex" {
		t.Errorf("after the refusal: %v, %v", e, err)
	}
	cmds = commandsFor(t, data, "meta", CommandOptions{Target: redis70, DropFieldTTLs: true})
	if len(cmds) != 2 {
		t.Errorf("with DropFieldTTLs: %q", cmds)
	}
	// And RESTORE payloads of these types only go to Redis v12.
	for _, tc := range []struct {
		t   Type
		dst Target
		ok  bool
	}{
		{TypeHashMetadataPreGA, Target{Redis, 12}, true},
		{TypeHashMetadataPreGA, redis70, false},
		{TypeHashMetadataPreGA, Target{Valkey, 80}, false}, // 22 means HASH_2 there
		{TypeHashListpackEx, Target{Valkey, 80}, false},
	} {
		_, err := PayloadVersion(Redis, tc.t, tc.dst)
		if (err == nil) != tc.ok {
			t.Errorf("PayloadVersion(%d → %+v) = %v, want ok=%v", tc.t, tc.dst, err, tc.ok)
		}
	}
}

// commandsFor decodes data up to key and returns its command-path commands as text.
func commandsFor(t *testing.T, data []byte, key string, opts CommandOptions) []string {
	t.Helper()
	d := NewDecoder(bytes.NewReader(data), Options{})
	for {
		e, err := d.Next()
		if err != nil {
			t.Fatalf("key %q not found: %v", key, err)
		}
		if e.Record != RecordKey || string(e.Key) != key {
			continue
		}
		var out []string
		err = NewCommandWriter(opts).WriteValue(d, func(args [][]byte) error {
			out = append(out, string(bytes.Join(args, []byte(" "))))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}

func TestOpcode243(t *testing.T) {
	// Valkey 9: SLOT_IMPORT (job name, ranges) is skipped.
	w := newRDB("VALKEY080").aux("valkey-ver", "9.0.0")
	w.byte1(opSlotImport).str(strings.Repeat("j", 40)).len(2).len(0).len(100).len(200).len(300)
	w.byte1(opSlotInfo).len(5).len(1).len(0)
	w.key(TypeString, "k").str("v")
	f := decodeBytes(t, w.end(true))
	if len(f.Keys) != 1 || f.Stats.SlotImports != 1 || f.Stats.SlotInfo != 1 {
		t.Fatalf("keys %d, slot imports %d, slot info %d", len(f.Keys), f.Stats.SlotImports, f.Stats.SlotInfo)
	}
	// Redis: 243 is KEY_META from RDB 13 on; in a v12 file it is an error.
	w = newRDB("REDIS0012").byte1(opSlotImport).len(1)
	_, err := decodeAll(bytes.NewReader(w.end(true)), Options{})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "243") {
		t.Fatalf("opcode 243 in a Redis file: %v", err)
	}
}

func TestHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name, magic string
		want        error
		text        string
	}{
		{"bad magic", "RUDIS0009", ErrCorrupt, "bad magic"},
		{"bad digits", "REDIS00x9", ErrCorrupt, "version"},
		{"newer redis", "REDIS0013", ErrUnsupported, "RDB v13"},
		{"newer valkey", "VALKEY081", ErrUnsupported, "Valkey RDB version 81"},
		{"short", "REDI", ErrCorrupt, "shorter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := append([]byte(tc.magic), opEOF, 0, 0, 0, 0, 0, 0, 0, 0)
			if tc.name == "short" {
				data = []byte(tc.magic)
			}
			_, err := decodeAll(bytes.NewReader(data), Options{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.text)
			}
		})
	}
	// AcceptNewerVersions reads a v13 file made only of known records.
	data := newRDB("REDIS0013").key(TypeString, "k").str("v").end(true)
	if _, err := decodeAll(bytes.NewReader(data), Options{AcceptNewerVersions: true}); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownType(t *testing.T) {
	for _, typ := range []byte{8, 26, 30, 200} {
		data := newRDB("REDIS0011").key(TypeString, "ok").str("v").byte1(typ).str("k").str("v").end(true)
		_, err := decodeAll(bytes.NewReader(data), Options{})
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrUnsupported) || e.Type != int(typ) || e.Offset != 15 {
			t.Fatalf("type %d: %v", typ, err)
		}
	}
	// Types 22+ are Redis-only when not Valkey's HASH_2: 24 in a Valkey file is unknown.
	data := newRDB("VALKEY080").byte1(24).str("k").end(true)
	if _, err := decodeAll(bytes.NewReader(data), Options{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("type 24 in a Valkey file: %v", err)
	}
}

func TestChecksum(t *testing.T) {
	w := newRDB("REDIS0009").aux("redis-ver", "5.0.0")
	w.key(TypeString, "key").str("some value long enough")
	data := w.end(true)
	decodeBytes(t, data)
	// A flipped byte inside a string value keeps the structure valid: only the CRC
	// can tell.
	i := bytes.Index(data, []byte("long"))
	bad := bytes.Clone(data)
	bad[i] ^= 0x20
	_, err := decodeAll(bytes.NewReader(bad), Options{})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("flipped byte: %v", err)
	}
	if _, err := decodeAll(bytes.NewReader(bad), Options{SkipChecksum: true}); err != nil {
		t.Fatalf("SkipChecksum: %v", err)
	}
	// A zero checksum means checksums were disabled when the file was written.
	zero := bytes.Clone(bad)
	copy(zero[len(zero)-8:], make([]byte, 8))
	if _, err := decodeAll(bytes.NewReader(zero), Options{}); err != nil {
		t.Fatalf("zero checksum: %v", err)
	}
}

// TestFlippedBytes flips every byte of fixtures with a checksum: each must fail with a
// decoder error (never succeed, never panic).
func TestFlippedBytes(t *testing.T) {
	for _, name := range []string{"hdt3213/listpack.rdb", "replicator/dump-stream.rdb", "replicator/dumpV11.rdb",
		"hdt3213/hash_with_hfe.rdb", "hdt3213/valkey_hash2_with_hfe.rdb", "replicator/dump-module-2.rdb"} {
		data := readFixture(t, name)
		for i := 0; i < len(data); i++ {
			bad := bytes.Clone(data)
			bad[i] ^= 0xFF
			err := drainAll(bytes.NewReader(bad), Options{Size: int64(len(bad)), MaxElementSize: 1 << 20, BufferSize: 64})
			if err == nil {
				t.Fatalf("%s: flipping byte %d went unnoticed", name, i)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: byte %d: error %v is not an *Error", name, i, err)
			}
		}
	}
}

// TestTruncation cuts fixtures at every byte offset: each prefix must fail as truncated,
// with an offset inside the prefix, both with and without a known size, and whether
// values are read raw or iterated.
func TestTruncation(t *testing.T) {
	for _, name := range []string{"hdt3213/listpack.rdb", "replicator/dump-stream.rdb", "replicator/dumpV11.rdb",
		"rdbtools/parser_filters.rdb", "hdt3213/hash_with_hfe.rdb", "rdbtools/redis_40_with_module.rdb",
		"replicator/function.rdb", "hdt3213/valkey_hash2_with_hfe.rdb", "rdbtools/easily_compressible_string_key.rdb"} {
		data := readFixture(t, name)
		end := len(data)
		if name == "rdbtools/redis_40_with_module.rdb" {
			end -= 40 // the trailing $EOF: mark is not part of the RDB
		}
		for cut := 0; cut < end; cut++ {
			prefix := data[:cut]
			for _, opts := range []Options{{BufferSize: 64}, {Size: int64(cut)}} {
				checkTruncated(t, name, cut, drainAll(bytes.NewReader(prefix), opts))
				checkTruncated(t, name, cut, decodeRaw(bytes.NewReader(prefix), opts))
			}
		}
	}
}

func checkTruncated(t *testing.T, name string, cut int, err error) {
	t.Helper()
	want := ErrTruncated
	if cut < 9 {
		want = ErrCorrupt // not even a header
	}
	var e *Error
	if !errors.Is(err, want) || !errors.As(err, &e) || e.Offset > int64(cut) {
		t.Fatalf("%s cut at %d: got %v, want %v within the prefix", name, cut, err, want)
	}
}

// drainAll iterates every value without keeping anything.
func drainAll(r io.Reader, opts Options) error {
	d := NewDecoder(r, opts)
	for {
		e, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Record == RecordKey && e.Kind() != KindModule {
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
}

// decodeRaw reads every value with Raw.
func decodeRaw(r io.Reader, opts Options) error {
	d := NewDecoder(r, opts)
	for {
		e, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Record == RecordKey {
			if _, _, err := d.Raw(1 << 20); err != nil {
				return err
			}
		}
	}
}

// countingReader counts what was read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestDataAfterEOF: an AOF tail or a diskless $EOF: mark after the checksum is left to
// the caller, either in Buffered or unread.
func TestDataAfterEOF(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail int
	}{{"valkey/rdb-preamble.aof", 52}, {"rdbtools/redis_40_with_module.rdb", 40}} {
		data := readFixture(t, tc.name)
		rdbLen := int64(len(data) - tc.tail)
		d := NewDecoder(bytes.NewReader(data), Options{})
		for {
			_, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if d.Offset() != rdbLen || !bytes.Equal(d.Buffered(), data[rdbLen:]) {
			t.Fatalf("%s: offset %d (want %d), buffered %q", tc.name, d.Offset(), rdbLen, d.Buffered())
		}
		// With the size known nothing past the RDB is read from the source.
		cr := &countingReader{r: bytes.NewReader(data)}
		d = NewDecoder(cr, Options{Size: rdbLen})
		for {
			if _, err := d.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if cr.n != rdbLen || len(d.Buffered()) != 0 {
			t.Fatalf("%s: read %d bytes of a %d-byte RDB", tc.name, cr.n, rdbLen)
		}
	}
}

func TestEmptyKeysSkipped(t *testing.T) {
	f := decodeBytes(t, readFixture(t, "valkey/corrupt_empty_keys.rdb"))
	if len(f.Keys) != 0 || f.Stats.EmptyKeys != 9 {
		t.Fatalf("keys %d, empty %d; want 0 and 9", len(f.Keys), f.Stats.EmptyKeys)
	}
	// Synthetic empties of the encodings the fixture lacks.
	w := newRDB("REDIS0011")
	w.key(TypeSetIntset, "is").len(8).raw([]byte{2, 0, 0, 0, 0, 0, 0, 0})
	w.key(TypeHashZipmap, "zm").len(2).raw([]byte{0, 0xFF})
	lp := listpack()
	w.key(TypeSetListpack, "sl").len(uint64(len(lp))).raw(lp)
	w.key(TypeListQuicklist2, "q2").len(1).len(2).len(uint64(len(lp))).raw(lp)
	w.key(TypeListQuicklist2, "q2-plain").len(1).len(1).str("x")
	data := w.end(true)
	f = decodeBytes(t, data)
	if len(f.Keys) != 1 || f.Keys[0].Key != "q2-plain" || f.Stats.EmptyKeys != 4 {
		t.Fatalf("keys %+v, empty %d", f.Keys, f.Stats.EmptyKeys)
	}
}

func TestModuleValues(t *testing.T) {
	f := decodeBytes(t, readFixture(t, "replicator/dump-module-2.rdb"))
	if len(f.Keys) != 1 || f.Keys[0].Module != "hellotype" || f.Keys[0].Idle < 0 {
		t.Fatalf("keys %+v", f.Keys)
	}
	f = decodeBytes(t, readFixture(t, "rdbtools/redis_60_with_module_aux.rdb"))
	if len(f.ModAux) != 1 || f.ModAux[0] != "test__rdb" {
		t.Fatalf("module aux %q", f.ModAux)
	}
	// A module value has a raw view (for RESTORE into a server with the module) but no
	// command path.
	data := readFixture(t, "rdbtools/redis_40_with_module.rdb")
	d := NewDecoder(bytes.NewReader(data), Options{})
	for {
		e, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Record != RecordKey || e.Kind() != KindModule {
			continue
		}
		if e.Module != "ReJSON-RL" {
			t.Fatalf("module %q", e.Module)
		}
		err = NewCommandWriter(CommandOptions{Target: redis70}).WriteValue(d, func([][]byte) error { return nil })
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("command path of a module value: %v", err)
		}
		break
	}
}

func TestFunctionsPreGA(t *testing.T) {
	f := decodeBytes(t, readFixture(t, "replicator/function.rdb"))
	if len(f.Functions) != 2 || !strings.HasPrefix(f.Functions[0], "#!lua name=lib2\n") || !strings.Contains(f.Functions[0], "register_function") {
		t.Fatalf("functions %q", f.Functions)
	}
}

func TestRestoreArgs(t *testing.T) {
	var p Payload
	for _, tc := range []struct {
		exp, idle int64
		freq      int
		want      string
	}{
		{-1, -1, -1, "RESTORE k 0 P REPLACE"},
		{1700000000123, -1, -1, "RESTORE k 1700000000123 P REPLACE ABSTTL"},
		{1700000000123, 42, -1, "RESTORE k 1700000000123 P REPLACE ABSTTL IDLETIME 42"},
		{-1, -1, 7, "RESTORE k 0 P REPLACE FREQ 7"},
		{0, -1, -1, "RESTORE k 1 P REPLACE ABSTTL"},
	} {
		got := string(bytes.Join(p.RestoreArgs([]byte("k"), []byte("P"), tc.exp, tc.idle, tc.freq), []byte(" ")))
		if got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestPayloadVersion(t *testing.T) {
	for _, tc := range []struct {
		src  Flavor
		t    Type
		dst  Target
		want int // 0: needs commands
	}{
		{Redis, TypeString, Target{Redis, 10}, 10},
		{Redis, TypeSetListpack, Target{Redis, 10}, 0},
		{Redis, TypeSetListpack, Target{Redis, 11}, 11},
		{Redis, TypeStreamListpacks3, Target{Redis, 10}, 0},
		{Redis, TypeListQuicklist2, Target{Redis, 9}, 0},
		{Redis, TypeListQuicklist2, Target{Valkey, 80}, 11},
		{Redis, TypeHashListpackEx, Target{Redis, 12}, 12},
		{Valkey, TypeValkeyHash2, Target{Valkey, 80}, 80},
		{Valkey, TypeValkeyHash2, Target{Redis, 12}, 0},
		{Valkey, TypeZSetListpack, Target{Redis, 10}, 10},
		{Redis, TypeModule2, Target{Redis, 10}, 10},
	} {
		v, err := PayloadVersion(tc.src, tc.t, tc.dst)
		if tc.want == 0 {
			if !errors.Is(err, ErrNeedsCommands) {
				t.Errorf("%s %s → %+v: %d, %v; want ErrNeedsCommands", tc.src, TypeName(tc.src, tc.t), tc.dst, v, err)
			}
		} else if v != tc.want || err != nil {
			t.Errorf("%s %s → %+v: %d, %v; want %d", tc.src, TypeName(tc.src, tc.t), tc.dst, v, err, tc.want)
		}
	}
	if got := TargetFor("", "7.0.15"); got != (Target{Redis, 10}) {
		t.Errorf("TargetFor 7.0.15 = %+v", got)
	}
	if got := TargetFor("valkey", "9.0.1"); got != (Target{Valkey, 80}) {
		t.Errorf("TargetFor valkey 9.0.1 = %+v", got)
	}
	if got := TargetFor("redis", "7.4.2"); got != (Target{Redis, 12}) {
		t.Errorf("TargetFor redis 7.4.2 = %+v", got)
	}
}

// TestAbandonedValues: values left unread, partly iterated or refused are skipped
// correctly by the next Next, in every encoding of a mixed file.
func TestAbandonedValues(t *testing.T) {
	for _, name := range []string{"replicator/listpack-bug.rdb", "rdbtools/parser_filters.rdb", "replicator/dump-stream.rdb",
		"replicator/dumpV11.rdb", "replicator/dump-ttlhash.rdb"} {
		data := readFixture(t, name)
		want := decodeBytes(t, data)
		for _, take := range []int{0, 1, 2, 5} {
			d := NewDecoder(bytes.NewReader(data), Options{BufferSize: 128})
			n := 0
			for {
				e, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s take %d: %v", name, take, err)
				}
				if e.Record != RecordKey {
					continue
				}
				if k := want.Keys[n]; k.Key != string(e.Key) || k.DB != e.DB {
					t.Fatalf("%s take %d: key %d is %q, want %q", name, take, n, e.Key, k.Key)
				}
				n++
				if take == 0 || e.Kind() == KindModule {
					continue
				}
				it, err := d.Iter()
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < take && it.Next(); i++ {
				}
			}
			if n != len(want.Keys) {
				t.Fatalf("%s take %d: %d keys, want %d", name, take, n, len(want.Keys))
			}
		}
	}
}

func TestSpecialScores(t *testing.T) {
	w := newRDB("REDIS0003").key(TypeZSet, "z").len(3)
	w.str("pinf").byte1(254).str("ninf").byte1(255).str("half").byte1(3).raw([]byte("0.5"))
	w.key(TypeZSet, "nan").len(1).str("n").byte1(253)
	data := w.end(false)
	cmds := commandsFor(t, data, "z", CommandOptions{Target: redis70})
	if want := "ZADD z inf pinf -inf ninf 0.5 half"; len(cmds) != 2 || cmds[1] != want {
		t.Fatalf("commands %q, want DEL then %q", cmds, want)
	}
	d := NewDecoder(bytes.NewReader(data), Options{})
	for e, err := d.Next(); err == nil; e, err = d.Next() {
		if string(e.Key) != "nan" {
			continue
		}
		err := NewCommandWriter(CommandOptions{Target: redis70}).WriteValue(d, func([][]byte) error { return nil })
		var re *Error
		if !errors.As(err, &re) || !errors.Is(err, ErrCorrupt) || re.Key != "nan" {
			t.Fatalf("NaN score: %v", err)
		}
	}
	// Value: raw when small, iterator when not.
	d = NewDecoder(bytes.NewReader(data), Options{})
	d.Next()
	if raw, it, err := d.Value(1000); raw == nil || it != nil || err != nil {
		t.Fatalf("Value(1000): %q %v %v", raw, it, err)
	}
	d.Next()
	if raw, it, err := d.Value(1); raw != nil || it == nil || err != nil || !it.Next() || !math.IsNaN(it.Elem().Score) {
		t.Fatalf("Value(1): %q %v %v", raw, it, err)
	}
}
