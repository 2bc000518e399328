package rdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strconv"
)

var (
	posInf = math.Inf(1)
	negInf = math.Inf(-1)
)

// Defaults for Options.
const (
	// DefaultMaxElementSize is Redis' proto-max-bulk-len: no server writes a single
	// string (key, element, blob) larger than this.
	DefaultMaxElementSize = 512 << 20
	// DefaultChunkSize is the size of the string chunks the iterator yields.
	DefaultChunkSize = 64 << 10
	// peekLimit bounds what Next may look ahead into a value (empty-collection check).
	peekLimit = 64 << 10
)

// Options configure a Decoder. The zero value is usable.
type Options struct {
	// Size is the total input size in bytes when known (a file, a sized replication
	// transfer); 0 means unknown. With it the decoder never reads past the end, rejects
	// lengths that cannot fit, and never buffers beyond it.
	Size int64
	// MaxElementSize caps any single span the decoder materialises (a key, a collection
	// element, an encoded blob, a decompressed string). Default DefaultMaxElementSize.
	MaxElementSize int64
	// ChunkSize is the most bytes of a string value one iterator element carries.
	// Default DefaultChunkSize.
	ChunkSize int
	// BufferSize is the initial read buffer. Default 64 KiB.
	BufferSize int
	// SkipChecksum disables the CRC64 check at the end (the checksum is still read).
	SkipChecksum bool
	// AcceptNewerVersions reads Redis files newer than RDB v12 as if they were v12:
	// decoding then stops with a clear error at the first type or opcode this build
	// does not know, instead of refusing the header.
	AcceptNewerVersions bool
}

// RecordType says what an Entry holds.
type RecordType uint8

const (
	// RecordKey is a key and its value.
	RecordKey RecordType = iota + 1
	// RecordAux is an AUX field: Key holds its name, Value its value.
	RecordAux
	// RecordFunction is a function library (FUNCTION2, or FUNCTION_PRE_GA converted to
	// the same form): Value holds the code as FUNCTION LOAD takes it, Key the library
	// name and Engine the engine.
	RecordFunction
	// RecordModuleAux is module data outside the keyspace (MODULE_AUX). It cannot be
	// transferred without the module; Module names it. The data is skipped.
	RecordModuleAux
)

// Entry is one record of the file. It is owned by the Decoder and overwritten by the
// next call to Next; its slices are valid until then.
type Entry struct {
	Record RecordType
	DB     int
	Key    []byte
	// Value is the AUX value or the function code; nil for keys (see Decoder.Raw and
	// Decoder.Iter).
	Value  []byte
	Type   Type   // on-disk type byte of a key's value
	Flavor Flavor // numbering of Type
	// ExpireAt is the absolute expiry in Unix milliseconds, or -1 for none. (A negative
	// time in the file reads as 0: long expired, as Redis treats it.)
	ExpireAt int64
	// Idle is the LRU idle time in seconds (IDLE opcode), or -1.
	Idle int64
	// Freq is the LFU counter (FREQ opcode), or -1.
	Freq int
	// Offset is where the record starts in the input (its first opcode).
	Offset int64
	// Module is the 9-character module type name of a MODULE_2 value or a MODULE_AUX
	// record; ModuleVersion its encoding version.
	Module        string
	ModuleVersion int
	// Engine is the function engine ("lua") of a RecordFunction.
	Engine string
}

// Kind returns the data type of a key's value.
func (e *Entry) Kind() Kind { return KindOf(e.Flavor, e.Type) }

// Header describes the file once the first Next has read it.
type Header struct {
	Flavor  Flavor
	Version int // 1–12 for Redis, 80 for VALKEY080
}

// Stats are counters of things the decoder consumed without emitting them.
type Stats struct {
	// EmptyKeys counts empty collections, which Redis skips on load (and which the
	// decoder therefore does not emit).
	EmptyKeys int64
	// SlotInfo counts SLOT_INFO records (cluster files from Redis 7.4 on).
	SlotInfo int64
	// SlotImports counts Valkey SLOT_IMPORT records.
	SlotImports int64
	// Resize holds the RESIZEDB hints: DB → [keys, keys with expiry].
	Resize map[int][2]uint64
	// Checksum is the CRC64 stored in the file (0 when absent or disabled).
	Checksum uint64
}

type valueState uint8

const (
	valueNone      valueState = iota // no key, or its value was consumed
	valuePending                     // Next returned a key; its value is unread
	valueIterating                   // an Iterator is reading the value
)

// Decoder reads an RDB stream record by record. See the package documentation for
// the value views.
type Decoder struct {
	rd      reader
	opts    Options
	hdr     Header
	started bool
	done    bool
	err     error

	db     int
	entry  Entry
	keyBuf []byte
	valBuf []byte
	state  valueState
	iter   Iterator

	// attributes set by opcodes for the next key
	expire int64
	idle   int64
	freq   int

	stats   Stats
	scratch []byte // decompressed strings, formatted integers
	lzf     lzfStream

	// rawSum is the input's running CRC64 before and after the value the last Raw
	// returned (raw; nil when the decoder does not checksum): Payload.BuildFrom derives
	// the payload's CRC from them instead of hashing the value a second time.
	rawSum struct {
		raw           []byte
		before, after uint64
	}
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r io.Reader, opts Options) *Decoder {
	if opts.MaxElementSize <= 0 {
		opts.MaxElementSize = DefaultMaxElementSize
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	d := &Decoder{opts: opts}
	d.rd.init(r, opts.Size, opts.MaxElementSize, opts.BufferSize)
	d.rd.crcOn = true
	d.iter.d = d
	return d
}

// Header returns the file's magic and version (valid after the first Next).
func (d *Decoder) Header() Header { return d.hdr }

// Stats returns counters of records consumed without being emitted.
func (d *Decoder) Stats() Stats { return d.stats }

// Offset returns the number of input bytes consumed so far.
func (d *Decoder) Offset() int64 { return d.rd.offset() }

// Buffered returns the bytes the decoder read from its source beyond what it consumed.
// After Next returns io.EOF these are the bytes that followed the RDB's checksum (an
// AOF tail, a diskless-transfer $EOF: mark); the source itself has been read exactly
// Offset()+len(Buffered()) bytes. With Options.Size set to the RDB's size nothing is
// read past it and Buffered is empty.
func (d *Decoder) Buffered() []byte { return d.rd.buffered() }

func (d *Decoder) errAt(off int64, op string, cause error) error {
	return &Error{Offset: off, Type: -1, Flavor: d.hdr.Flavor, Op: op, Err: cause}
}

// keyErr attaches the current key to an error from inside its value.
func (d *Decoder) keyErr(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Offset: d.rd.offset(), Type: -1, Flavor: d.hdr.Flavor, Err: err}
		err = e
	}
	if e.Type < 0 {
		e.Key, e.DB, e.Type = truncKey(d.entry.Key), d.entry.DB, int(d.entry.Type)
	}
	return err
}

// fail makes err sticky.
func (d *Decoder) fail(err error) error {
	if d.err == nil {
		d.err = err
	}
	return err
}

// Next reads the next record. It returns io.EOF after the EOF opcode and a valid
// checksum. A value left unread (or partly iterated) is skipped first.
func (d *Decoder) Next() (*Entry, error) {
	if d.err != nil {
		return nil, d.err
	}
	if d.done {
		return nil, io.EOF
	}
	if !d.started {
		if err := d.readHeader(); err != nil {
			return nil, d.fail(err)
		}
		d.started = true
	}
	if err := d.finishValue(); err != nil {
		return nil, d.fail(err)
	}
	d.rawSum.raw = nil
	d.expire, d.idle, d.freq = -1, -1, -1
	for {
		e, err := d.nextRecord()
		if err != nil {
			if err == io.EOF {
				d.done = true
				return nil, io.EOF
			}
			return nil, d.fail(err)
		}
		if e != nil {
			return e, nil
		}
	}
}

func (d *Decoder) finishValue() error {
	switch d.state {
	case valuePending:
		d.state = valueNone
		return d.keyErr(d.skipValue(d.entry.Type))
	case valueIterating:
		for d.iter.Next() {
		}
		d.state = valueNone
		return d.iter.Err()
	}
	return nil
}

func (d *Decoder) readHeader() error {
	b, err := d.rd.readN(9)
	if err != nil {
		if errors.Is(err, ErrTruncated) {
			return d.errAt(0, "header", causef(ErrCorrupt, "input shorter than the 9-byte RDB header"))
		}
		return d.errAt(0, "header", err)
	}
	switch {
	case bytes.HasPrefix(b, []byte("REDIS")):
		v, ok := atoiDigits(b[5:9])
		if !ok || v < 1 {
			return d.errAt(0, "header", causef(ErrCorrupt, "bad RDB version %q", b[5:9]))
		}
		if v > MaxRedisVersion && !d.opts.AcceptNewerVersions {
			return d.errAt(5, "header", causef(ErrUnsupported,
				"RDB v%d is a format newer than this build reads (up to v%d): written by a newer Redis; upgrade Ferry, or set AcceptNewerVersions to try", v, MaxRedisVersion))
		}
		d.hdr = Header{Flavor: Redis, Version: v}
	case bytes.HasPrefix(b, []byte("VALKEY")):
		v, ok := atoiDigits(b[6:9])
		if !ok {
			return d.errAt(0, "header", causef(ErrCorrupt, "bad Valkey RDB version %q", b[6:9]))
		}
		if v != ValkeyVersion80 && !(v > maxValkeyVersion && d.opts.AcceptNewerVersions) {
			return d.errAt(6, "header", causef(ErrUnsupported,
				"Valkey RDB version %d is not one this build reads (%d): written by a newer Valkey; upgrade Ferry", v, ValkeyVersion80))
		}
		d.hdr = Header{Flavor: Valkey, Version: v}
	default:
		return d.errAt(0, "header", causef(ErrCorrupt, "bad magic %q: not an RDB file (expected REDIS or VALKEY)", b[:min(len(b), 9)]))
	}
	d.entry.Flavor = d.hdr.Flavor
	if d.hdr.Flavor == Redis && d.hdr.Version < 5 {
		d.rd.crcOn = false // no checksum before RDB v5
	}
	if d.opts.SkipChecksum {
		d.rd.crcOn = false
	}
	return nil
}

func atoiDigits(b []byte) (int, bool) {
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// nextRecord reads one opcode and what belongs to it. It returns a nil entry for
// records that are consumed silently (SELECTDB, RESIZEDB, expiry…).
func (d *Decoder) nextRecord() (*Entry, error) {
	start := d.rd.offset()
	op, err := d.rd.readByte()
	if err != nil {
		return nil, d.errAt(start, "record type", err)
	}
	switch op {
	case opEOF:
		return nil, d.readTrailer(start)
	case opSelectDB:
		v, err := d.readLen()
		if err != nil {
			return nil, d.errAt(start, "SELECTDB", err)
		}
		if v > math.MaxInt32 {
			return nil, d.errAt(start, "SELECTDB", causef(ErrCorrupt, "database number %d", v))
		}
		d.db = int(v)
		return nil, nil
	case opResizeDB:
		a, err := d.readLen()
		if err != nil {
			return nil, d.errAt(start, "RESIZEDB", err)
		}
		b, err := d.readLen()
		if err != nil {
			return nil, d.errAt(start, "RESIZEDB", err)
		}
		if d.stats.Resize == nil {
			d.stats.Resize = make(map[int][2]uint64)
		}
		if len(d.stats.Resize) < 1024 { // bounded: one per DB in real files
			d.stats.Resize[d.db] = [2]uint64{a, b}
		}
		return nil, nil
	case opExpireTimeMs:
		b, err := d.rd.readN(8)
		if err != nil {
			return nil, d.errAt(start, "EXPIRETIME_MS", err)
		}
		d.expire = max(int64(binary.LittleEndian.Uint64(b)), 0)
		return nil, nil
	case opExpireTime:
		b, err := d.rd.readN(4)
		if err != nil {
			return nil, d.errAt(start, "EXPIRETIME", err)
		}
		d.expire = max(int64(int32(binary.LittleEndian.Uint32(b)))*1000, 0)
		return nil, nil
	case opIdle:
		v, err := d.readLen()
		if err != nil {
			return nil, d.errAt(start, "IDLE", err)
		}
		d.idle = int64(v & math.MaxInt64)
		return nil, nil
	case opFreq:
		b, err := d.rd.readByte()
		if err != nil {
			return nil, d.errAt(start, "FREQ", err)
		}
		d.freq = int(b)
		return nil, nil
	case opAux:
		return d.readAux(start)
	case opSlotInfo:
		for i := 0; i < 3; i++ {
			if _, err := d.readLen(); err != nil {
				return nil, d.errAt(start, "SLOT_INFO", err)
			}
		}
		d.stats.SlotInfo++
		return nil, nil
	case opFunction2, opFunctionPreGA:
		return d.readFunction(start, op)
	case opModuleAux:
		return d.readModuleAux(start)
	case opSlotImport:
		if d.hdr.Flavor != Valkey {
			return nil, d.errAt(start, "opcode 243", causef(ErrUnsupported,
				"opcode 243 (KEY_META in Redis RDB v13+) in an RDB v%d file: a format newer than this build reads, or a corrupt file", d.hdr.Version))
		}
		// Valkey 9 atomic slot migration state: job name, then slot ranges. Only
		// meaningful to the cluster that wrote it.
		if err := d.skipString(); err != nil {
			return nil, d.errAt(start, "SLOT_IMPORT", err)
		}
		n, err := d.readLen()
		if err != nil {
			return nil, d.errAt(start, "SLOT_IMPORT", err)
		}
		for i := uint64(0); i < 2*n; i++ {
			if _, err := d.readLen(); err != nil {
				return nil, d.errAt(start, "SLOT_IMPORT", err)
			}
		}
		d.stats.SlotImports++
		return nil, nil
	}
	return d.readKey(start, Type(op))
}

func (d *Decoder) readTrailer(start int64) error {
	if d.hdr.Flavor == Redis && d.hdr.Version < 5 {
		return io.EOF
	}
	sum := d.rd.sum()
	b, err := d.rd.readN(8)
	if err != nil {
		return d.errAt(start+1, "checksum", err)
	}
	stored := binary.LittleEndian.Uint64(b)
	d.stats.Checksum = stored
	if stored != 0 && d.rd.crcOn && stored != sum {
		return d.errAt(start+1, "checksum", causef(ErrChecksum, "file says %016x, content gives %016x", stored, sum))
	}
	return io.EOF
}

func (d *Decoder) readAux(start int64) (*Entry, error) {
	k, err := d.readString()
	if err != nil {
		return nil, d.errAt(start, "AUX name", err)
	}
	d.keyBuf = append(d.keyBuf[:0], k...)
	v, err := d.readString()
	if err != nil {
		return nil, d.errAt(start, "AUX value", err)
	}
	d.valBuf = append(d.valBuf[:0], v...)
	d.entry = Entry{Record: RecordAux, DB: d.db, Key: d.keyBuf, Value: d.valBuf, Flavor: d.hdr.Flavor,
		ExpireAt: -1, Idle: -1, Freq: -1, Offset: start}
	return &d.entry, nil
}

func (d *Decoder) readFunction(start int64, op byte) (*Entry, error) {
	var engine string
	if op == opFunction2 {
		code, err := d.readString()
		if err != nil {
			return nil, d.errAt(start, "FUNCTION2 library", err)
		}
		d.valBuf = append(d.valBuf[:0], code...)
	} else {
		// Redis 7.0 rc1/rc2: name, engine, has-description, [description], code. Redis
		// 7.0 GA turned it into "#!<engine> name=<name>\n<code>"; do the same so the
		// result loads anywhere.
		name, err := d.readString()
		if err != nil {
			return nil, d.errAt(start, "FUNCTION_PRE_GA name", err)
		}
		d.keyBuf = append(d.keyBuf[:0], name...)
		eng, err := d.readString()
		if err != nil {
			return nil, d.errAt(start, "FUNCTION_PRE_GA engine", err)
		}
		engine = string(bytes.ToLower(eng))
		hasDesc, err := d.readLen()
		if err != nil {
			return nil, d.errAt(start, "FUNCTION_PRE_GA description flag", err)
		}
		if hasDesc != 0 {
			if err := d.skipString(); err != nil {
				return nil, d.errAt(start, "FUNCTION_PRE_GA description", err)
			}
		}
		code, err := d.readString()
		if err != nil {
			return nil, d.errAt(start, "FUNCTION_PRE_GA code", err)
		}
		d.valBuf = append(d.valBuf[:0], "#!"...)
		d.valBuf = append(d.valBuf, engine...)
		d.valBuf = append(d.valBuf, " name="...)
		d.valBuf = append(d.valBuf, d.keyBuf...)
		d.valBuf = append(d.valBuf, '\n')
		d.valBuf = append(d.valBuf, code...)
	}
	name, eng := parseShebang(d.valBuf)
	if engine == "" {
		engine = eng
	}
	d.keyBuf = append(d.keyBuf[:0], name...)
	d.entry = Entry{Record: RecordFunction, DB: d.db, Key: d.keyBuf, Value: d.valBuf, Flavor: d.hdr.Flavor,
		ExpireAt: -1, Idle: -1, Freq: -1, Offset: start, Engine: engine}
	return &d.entry, nil
}

// parseShebang extracts engine and library name from "#!lua name=mylib ...\n".
func parseShebang(code []byte) (name []byte, engine string) {
	line := code
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	if !bytes.HasPrefix(line, []byte("#!")) {
		return nil, ""
	}
	fields := bytes.Fields(line[2:])
	if len(fields) == 0 {
		return nil, ""
	}
	engine = string(fields[0])
	for _, f := range fields[1:] {
		if v, ok := bytes.CutPrefix(f, []byte("name=")); ok {
			name = v
		}
	}
	return name, engine
}

func (d *Decoder) readModuleAux(start int64) (*Entry, error) {
	id, err := d.readLen()
	if err != nil {
		return nil, d.errAt(start, "MODULE_AUX module id", err)
	}
	whenOp, err := d.readLen()
	if err != nil {
		return nil, d.errAt(start, "MODULE_AUX when", err)
	}
	if whenOp != moduleOpUInt {
		return nil, d.errAt(start, "MODULE_AUX when", causef(ErrCorrupt, "when-opcode %d, expected %d", whenOp, moduleOpUInt))
	}
	if _, err := d.readLen(); err != nil {
		return nil, d.errAt(start, "MODULE_AUX when", err)
	}
	name := moduleName(id)
	if err := d.skipModuleOps(); err != nil {
		return nil, d.errAt(start, "MODULE_AUX data of module "+name, err)
	}
	d.keyBuf = d.keyBuf[:0]
	d.entry = Entry{Record: RecordModuleAux, DB: d.db, Key: d.keyBuf, Flavor: d.hdr.Flavor,
		ExpireAt: -1, Idle: -1, Freq: -1, Offset: start, Module: name, ModuleVersion: int(id & 1023)}
	return &d.entry, nil
}

const moduleCharset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// moduleName decodes the 9-character type name packed into the top 54 bits of a
// module type id (the low 10 bits are the encoding version).
func moduleName(id uint64) string {
	var b [9]byte
	id >>= 10
	for i := 8; i >= 0; i-- {
		b[i] = moduleCharset[id&63]
		id >>= 6
	}
	return string(b[:])
}

func (d *Decoder) readKey(start int64, t Type) (*Entry, error) {
	f := d.hdr.Flavor
	if !knownType(f, t) {
		why := "the file is corrupt, or was written by a newer server than this build reads"
		if f == Redis && d.hdr.Version > MaxRedisVersion {
			why = "a format newer than this build (RDB v" + strconv.Itoa(d.hdr.Version) + ")"
		}
		return nil, &Error{Offset: start, Type: int(t), Flavor: f, DB: d.db, Op: "record type",
			Err: causef(ErrUnsupported, "unknown value type or opcode %d: %s", t, why)}
	}
	k, err := d.readString()
	if err != nil {
		return nil, &Error{Offset: start + 1, Type: int(t), Flavor: f, DB: d.db, Op: "key", Err: err}
	}
	d.keyBuf = append(d.keyBuf[:0], k...)
	d.entry = Entry{Record: RecordKey, DB: d.db, Key: d.keyBuf, Type: t, Flavor: f,
		ExpireAt: d.expire, Idle: d.idle, Freq: d.freq, Offset: start}
	if t == TypeModulePreGA {
		return nil, d.keyErr(d.errAt(d.rd.offset(), "module value", causef(ErrUnsupported,
			"a MODULE_PRE_GA value (Redis 4.0 release candidates) is not self-describing: nothing after it can be read without the module; load the file into a server with the module and save it again")))
	}
	empty, err := d.peekValue(t)
	if err != nil {
		return nil, d.keyErr(err)
	}
	if empty {
		d.stats.EmptyKeys++
		if err := d.skipValue(t); err != nil {
			return nil, d.keyErr(err)
		}
		d.expire, d.idle, d.freq = -1, -1, -1
		return nil, nil
	}
	d.state = valuePending
	return &d.entry, nil
}

// peekValue looks at the start of a value without consuming it: it reports empty
// collections (which Redis skips on load, so the decoder must not emit them) and fills
// in the module name of module values.
func (d *Decoder) peekValue(t Type) (empty bool, err error) {
	switch t {
	case TypeString, TypeStreamListpacks, TypeStreamListpacks2, TypeStreamListpacks3:
		return false, nil
	}
	d.rd.setMark(peekLimit)
	empty, err = d.peekEmpty(t)
	d.rd.rewind()
	if errors.Is(err, errMarkOverflow) {
		return false, nil
	}
	return empty, err
}

func (d *Decoder) peekEmpty(t Type) (bool, error) {
	f := d.hdr.Flavor
	switch {
	case t == TypeModule2:
		off := d.rd.offset()
		id, err := d.readLen()
		if err != nil {
			return false, d.errAt(off, "module type id", err)
		}
		d.entry.Module, d.entry.ModuleVersion = moduleName(id), int(id&1023)
		return false, nil
	case t == TypeHashMetadata && f == Redis:
		if err := d.rd.skip(8); err != nil {
			return false, err
		}
		fallthrough
	case t == TypeList || t == TypeSet || t == TypeZSet || t == TypeHash || t == TypeZSet2 ||
		t == TypeHashMetadataPreGA: // also Valkey HASH_2: a count first
		n, err := d.readLen()
		return n == 0, err
	case t == TypeListQuicklist || t == TypeListQuicklist2:
		n, err := d.readLen()
		if err != nil {
			return false, err
		}
		for ; n > 0; n-- {
			container := uint64(2)
			if t == TypeListQuicklist2 {
				if container, err = d.readLen(); err != nil {
					return false, err
				}
				if container == 1 { // a PLAIN node is one element
					return false, nil
				}
			}
			empty, err := d.peekBlobEmpty(t)
			if err != nil || !empty {
				return false, err
			}
		}
		return true, nil
	case t == TypeHashListpackEx && f == Redis:
		if err := d.rd.skip(8); err != nil {
			return false, err
		}
		return d.peekBlobEmpty(t)
	default: // single-blob encodings
		return d.peekBlobEmpty(t)
	}
}

// peekBlobEmpty reads a blob header and reports whether the structure holds no
// elements. Empty structures are tiny and never LZF-compressed (Redis compresses only
// strings longer than 20 bytes), so only short plain blobs need looking at.
func (d *Decoder) peekBlobEmpty(t Type) (bool, error) {
	n, enc, err := d.readLenEnc()
	if err != nil || enc || n > 16 {
		return false, err
	}
	b, err := d.rd.readN(int(n))
	if err != nil {
		return false, err
	}
	switch t {
	case TypeHashZipmap:
		return n == 2 && b[0] == 0 && b[1] == 0xFF, nil
	case TypeSetIntset:
		return n == 8 && binary.LittleEndian.Uint32(b[4:]) == 0, nil
	case TypeListZiplist, TypeZSetZiplist, TypeHashZiplist, TypeListQuicklist:
		return n == 11 && binary.LittleEndian.Uint16(b[8:]) == 0, nil
	default: // listpacks
		return n == 7 && binary.LittleEndian.Uint16(b[4:]) == 0, nil
	}
}

// ---- primitives ----

// readLenEnc reads a length field. enc reports the "special encoding" form (11xxxxxx),
// in which case the value is the encoding number.
func (d *Decoder) readLenEnc() (v uint64, enc bool, err error) {
	b, err := d.rd.readByte()
	if err != nil {
		return 0, false, err
	}
	switch b >> 6 {
	case 0:
		return uint64(b & 0x3F), false, nil
	case 1:
		c, err := d.rd.readByte()
		if err != nil {
			return 0, false, err
		}
		return uint64(b&0x3F)<<8 | uint64(c), false, nil
	case 2:
		switch b {
		case 0x80:
			x, err := d.rd.readN(4)
			if err != nil {
				return 0, false, err
			}
			return uint64(binary.BigEndian.Uint32(x)), false, nil
		case 0x81:
			x, err := d.rd.readN(8)
			if err != nil {
				return 0, false, err
			}
			return binary.BigEndian.Uint64(x), false, nil
		}
		return 0, false, causef(ErrCorrupt, "invalid length encoding 0x%02x", b)
	default:
		return uint64(b & 0x3F), true, nil
	}
}

func (d *Decoder) readLen() (uint64, error) {
	v, enc, err := d.readLenEnc()
	if err == nil && enc {
		err = causef(ErrCorrupt, "a string encoding where a length was expected")
	}
	return v, err
}

// checkLen rejects lengths no input could hold.
func (d *Decoder) checkLen(n uint64) error {
	if n > uint64(d.opts.MaxElementSize) {
		return causef(ErrTooLarge, "a %d-byte string is larger than the %d-byte limit", n, d.opts.MaxElementSize)
	}
	if d.opts.Size > 0 && int64(n) > d.opts.Size-d.rd.offset() {
		return causef(ErrTruncated, "a %d-byte string at offset %d in a %d-byte input", n, d.rd.offset(), d.opts.Size)
	}
	return nil
}

// readString reads an RDB string. The result is valid until the next read.
func (d *Decoder) readString() ([]byte, error) {
	n, enc, err := d.readLenEnc()
	if err != nil {
		return nil, err
	}
	if !enc {
		if err := d.checkLen(n); err != nil {
			return nil, err
		}
		return d.rd.readN(int(n))
	}
	switch n {
	case 0, 1, 2:
		v, err := d.readIntEnc(int(n))
		if err != nil {
			return nil, err
		}
		d.scratch = strconv.AppendInt(d.scratch[:0], v, 10)
		return d.scratch, nil
	case 3:
		clen, ulen, err := d.readLZFHeader()
		if err != nil {
			return nil, err
		}
		in, err := d.rd.readN(int(clen))
		if err != nil {
			return nil, err
		}
		d.scratch, err = lzfDecompress(d.scratch[:0], in, int(ulen))
		return d.scratch, err
	}
	return nil, causef(ErrCorrupt, "unknown string encoding %d", n)
}

// readIntEnc reads an INT8/16/32-encoded string's value.
func (d *Decoder) readIntEnc(kind int) (int64, error) {
	size := 1 << kind
	b, err := d.rd.readN(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return int64(int8(b[0])), nil
	case 2:
		return int64(int16(binary.LittleEndian.Uint16(b))), nil
	default:
		return int64(int32(binary.LittleEndian.Uint32(b))), nil
	}
}

func (d *Decoder) readLZFHeader() (clen, ulen uint64, err error) {
	if clen, err = d.readLen(); err != nil {
		return
	}
	if ulen, err = d.readLen(); err != nil {
		return
	}
	if err = d.checkLen(clen); err != nil {
		return
	}
	if ulen > uint64(d.opts.MaxElementSize) {
		return 0, 0, causef(ErrTooLarge, "a %d-byte compressed string is larger than the %d-byte limit", ulen, d.opts.MaxElementSize)
	}
	if ulen > clen*lzfMaxRatio+32 {
		return 0, 0, causef(ErrCorrupt, "LZF header claims %d bytes from %d compressed bytes", ulen, clen)
	}
	return clen, ulen, nil
}

// skipString consumes an RDB string without decoding it.
func (d *Decoder) skipString() error {
	n, enc, err := d.readLenEnc()
	if err != nil {
		return err
	}
	if !enc {
		// No cap beyond the input's size here: skipping allocates nothing.
		if n > math.MaxInt64 {
			return ErrTruncated
		}
		return d.rd.skip(int64(n))
	}
	switch n {
	case 0, 1, 2:
		return d.rd.skip(1 << n)
	case 3:
		clen, err := d.readLen()
		if err != nil {
			return err
		}
		if _, err := d.readLen(); err != nil {
			return err
		}
		if clen > math.MaxInt64 {
			return ErrTruncated
		}
		return d.rd.skip(int64(clen))
	}
	return causef(ErrCorrupt, "unknown string encoding %d", n)
}

// openBlob starts reading an RDB string that holds an encoded structure.
func (d *Decoder) openBlob(raw *rdrSrc, mem *memSrc) (byteSrc, error) {
	n, enc, err := d.readLenEnc()
	if err != nil {
		return nil, err
	}
	if !enc {
		if err := d.checkLen(n); err != nil {
			return nil, err
		}
		*raw = rdrSrc{rd: &d.rd, n: int64(n)}
		return raw, nil
	}
	switch n {
	case 3:
		clen, ulen, err := d.readLZFHeader()
		if err != nil {
			return nil, err
		}
		if ulen <= uint64(d.opts.ChunkSize) {
			in, err := d.rd.readN(int(clen))
			if err != nil {
				return nil, err
			}
			mem.b, err = lzfDecompress(mem.b[:0], in, int(ulen))
			mem.p = 0
			return mem, err
		}
		d.lzf.reset(&d.rd, int64(clen), int64(ulen))
		return &d.lzf, nil
	case 0, 1, 2:
		v, err := d.readIntEnc(int(n))
		if err != nil {
			return nil, err
		}
		mem.b, mem.p = strconv.AppendInt(mem.b[:0], v, 10), 0
		return mem, nil
	}
	return nil, causef(ErrCorrupt, "unknown string encoding %d", n)
}

// readDouble reads a ZSET (v1) score: a length byte, then ASCII; 253–255 are nan,
// +inf and -inf.
func (d *Decoder) readDouble() (float64, error) {
	n, err := d.rd.readByte()
	if err != nil {
		return 0, err
	}
	switch n {
	case 253:
		return math.NaN(), nil
	case 254:
		return posInf, nil
	case 255:
		return negInf, nil
	}
	b, err := d.rd.readN(int(n))
	if err != nil {
		return 0, err
	}
	return parseScore(b)
}

func (d *Decoder) readBinaryDouble() (float64, error) {
	b, err := d.rd.readN(8)
	if err != nil {
		return 0, err
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
}

func (d *Decoder) readMillis() (int64, error) {
	b, err := d.rd.readN(8)
	if err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// skipModuleOps walks a MODULE_2 value's self-describing opcode stream to its EOF.
func (d *Decoder) skipModuleOps() error {
	for {
		off := d.rd.offset()
		op, err := d.readLen()
		if err != nil {
			return d.errAt(off, "module opcode", err)
		}
		switch op {
		case moduleOpEOF:
			return nil
		case moduleOpSInt, moduleOpUInt:
			_, err = d.readLen()
		case moduleOpFloat:
			err = d.rd.skip(4)
		case moduleOpDouble:
			err = d.rd.skip(8)
		case moduleOpString:
			err = d.skipString()
		default:
			return d.errAt(off, "module opcode", causef(ErrCorrupt, "unknown module opcode %d", op))
		}
		if err != nil {
			return d.errAt(off, "module data", err)
		}
	}
}

// ---- values ----

// Raw returns the value's bytes exactly as they appear in the input — what a RESTORE
// payload carries after its type byte — if they are at most max bytes. When the value
// is longer, ok is false and the value is left unread: Iter then reads it from its
// start (the bytes scanned so far are still buffered, so the stream is not re-read).
// The slice is valid until the next call on the Decoder.
func (d *Decoder) Raw(max int) (raw []byte, ok bool, err error) {
	if d.state != valuePending {
		return nil, false, errors.New("rdb: Raw called without an unread value (call Next first; a value can be read once)")
	}
	if max < 0 {
		max = 0
	}
	var before uint64
	if d.rd.crcOn {
		before = d.rd.sum() // folds only the bytes before the value: they are hashed once either way
	}
	d.rd.setMark(max)
	err = d.skipValue(d.entry.Type)
	if errors.Is(err, errMarkOverflow) {
		d.rd.rewind()
		return nil, false, nil
	}
	if err != nil {
		d.rd.clearMark()
		d.state = valueNone
		return nil, false, d.fail(d.keyErr(err))
	}
	raw = d.rd.marked()
	d.rd.clearMark()
	d.state = valueNone
	if d.rd.crcOn {
		d.rawSum.raw, d.rawSum.before, d.rawSum.after = raw, before, d.rd.sum()
	}
	return raw, true, nil
}

// Value is Raw(max) and, when the value is larger than max, Iter: exactly one of raw
// and it is set.
func (d *Decoder) Value(max int) (raw []byte, it *Iterator, err error) {
	raw, ok, err := d.Raw(max)
	if err != nil || ok {
		return raw, nil, err
	}
	it, err = d.Iter()
	return nil, it, err
}

// SkipValue consumes the current value without decoding it and returns its size in
// bytes. (Next does this by itself for values left unread.)
func (d *Decoder) SkipValue() (int64, error) {
	if d.state != valuePending {
		return 0, errors.New("rdb: SkipValue called without an unread value")
	}
	start := d.rd.offset()
	d.state = valueNone
	if err := d.skipValue(d.entry.Type); err != nil {
		return 0, d.fail(d.keyErr(err))
	}
	return d.rd.offset() - start, nil
}

// Iter returns an iterator over the current value's elements. It reuses one Iterator
// per Decoder: the previous one is invalid after this call or the next Next. Module
// values have no elements: for them Iter fails and leaves the value unread (Raw still
// works).
func (d *Decoder) Iter() (*Iterator, error) {
	if d.state != valuePending {
		return nil, errors.New("rdb: Iter called without an unread value (call Next first; a value can be read once)")
	}
	if d.entry.Kind() == KindModule {
		return nil, d.keyErr(d.errAt(d.rd.offset(), "value", causef(ErrUnsupported,
			"module %s values have no elements: only a RESTORE payload can carry them", d.entry.Module)))
	}
	d.state = valueIterating
	d.iter.reset(d.entry.Type, d.hdr.Flavor)
	return &d.iter, nil
}

// skipValue walks a value's structure to its end, decoding only lengths.
func (d *Decoder) skipValue(t Type) error {
	start := d.rd.offset()
	err := d.skipValueInner(t)
	if err != nil && !errors.Is(err, errMarkOverflow) {
		var e *Error
		if !errors.As(err, &e) {
			err = d.errAt(d.rd.offset(), "value starting at offset "+strconv.FormatInt(start, 10), err)
		}
	}
	return err
}

func (d *Decoder) skipValueInner(t Type) error {
	f := d.hdr.Flavor
	switch t {
	case TypeString, TypeHashZipmap, TypeListZiplist, TypeSetIntset, TypeZSetZiplist, TypeHashZiplist,
		TypeHashListpack, TypeZSetListpack, TypeSetListpack:
		return d.skipString()
	case TypeList, TypeSet, TypeListQuicklist:
		return d.skipCounted(1, 0, nil)
	case TypeHash:
		return d.skipCounted(2, 0, nil)
	case TypeZSet:
		return d.skipCounted(1, 0, func() error {
			n, err := d.rd.readByte()
			if err != nil || n >= 253 {
				return err
			}
			return d.rd.skip(int64(n))
		})
	case TypeZSet2:
		return d.skipCounted(1, 8, nil)
	case TypeModule2:
		if _, err := d.readLen(); err != nil {
			return err
		}
		return d.skipModuleOps()
	case TypeListQuicklist2:
		n, err := d.readLen()
		if err != nil {
			return err
		}
		for ; n > 0; n-- {
			if _, err := d.readLen(); err != nil {
				return err
			}
			if err := d.skipString(); err != nil {
				return err
			}
		}
		return nil
	case TypeStreamListpacks, TypeStreamListpacks2, TypeStreamListpacks3:
		return d.skipStream(t)
	}
	if f == Valkey {
		if t == TypeValkeyHash2 {
			return d.skipCounted(2, 8, nil) // field, value, 8-byte expiry
		}
	} else {
		switch t {
		case TypeHashListpackExPre:
			return d.skipString()
		case TypeHashListpackEx:
			if err := d.rd.skip(8); err != nil {
				return err
			}
			return d.skipString()
		case TypeHashMetadata, TypeHashMetadataPreGA:
			if t == TypeHashMetadata {
				if err := d.rd.skip(8); err != nil {
					return err
				}
			}
			return d.skipCounted(2, 0, func() error { _, err := d.readLen(); return err }, true)
		}
	}
	return causef(ErrUnsupported, "no reader for type %d", t)
}

// skipCounted skips a count followed by that many items of `strings` strings and
// `fixed` fixed bytes; extra, if set, reads one more field per item (before the
// strings when first is true, after them otherwise).
func (d *Decoder) skipCounted(strings int, fixed int64, extra func() error, first ...bool) error {
	n, err := d.readLen()
	if err != nil {
		return err
	}
	before := len(first) > 0 && first[0]
	for ; n > 0; n-- {
		if extra != nil && before {
			if err := extra(); err != nil {
				return err
			}
		}
		for i := 0; i < strings; i++ {
			if err := d.skipString(); err != nil {
				return err
			}
		}
		if fixed > 0 {
			if err := d.rd.skip(fixed); err != nil {
				return err
			}
		}
		if extra != nil && !before {
			if err := extra(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Decoder) skipStream(t Type) error {
	nodes, err := d.readLen()
	if err != nil {
		return err
	}
	for ; nodes > 0; nodes-- {
		if err := d.skipString(); err != nil { // master ID
			return err
		}
		if err := d.skipString(); err != nil { // listpack
			return err
		}
	}
	meta := 3 // length, last id
	if t >= TypeStreamListpacks2 {
		meta += 5 // first id, max deleted id, entries added
	}
	for i := 0; i < meta; i++ {
		if _, err := d.readLen(); err != nil {
			return err
		}
	}
	groups, err := d.readLen()
	if err != nil {
		return err
	}
	for ; groups > 0; groups-- {
		if err := d.skipString(); err != nil { // name
			return err
		}
		n := 2 // last id
		if t >= TypeStreamListpacks2 {
			n++ // entries read
		}
		for i := 0; i < n; i++ {
			if _, err := d.readLen(); err != nil {
				return err
			}
		}
		pel, err := d.readLen()
		if err != nil {
			return err
		}
		for ; pel > 0; pel-- {
			if err := d.rd.skip(16 + 8); err != nil { // raw ID, delivery time
				return err
			}
			if _, err := d.readLen(); err != nil { // delivery count
				return err
			}
		}
		consumers, err := d.readLen()
		if err != nil {
			return err
		}
		for ; consumers > 0; consumers-- {
			if err := d.skipString(); err != nil {
				return err
			}
			times := int64(8) // seen time
			if t >= TypeStreamListpacks3 {
				times += 8 // active time
			}
			if err := d.rd.skip(times); err != nil {
				return err
			}
			pel, err := d.readLen()
			if err != nil {
				return err
			}
			for ; pel > 0; pel-- {
				if err := d.rd.skip(16); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
