package rdb

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
)

// ElemKind says which fields of an Elem are set.
type ElemKind uint8

const (
	// ElemChunk is a piece of a string value: Member, at byte Offset of the string. A
	// string yields at least one chunk (an empty one for "").
	ElemChunk ElemKind = iota + 1
	// ElemListItem is one list element (Member), head to tail.
	ElemListItem
	// ElemSetMember is one set member (Member).
	ElemSetMember
	// ElemZSetMember is a member (Member) and its Score.
	ElemZSetMember
	// ElemHashField is a field (Member), its Value and its ExpireAt (-1: none).
	ElemHashField
	// ElemStreamEntry is a live stream entry: ID and Fields (field, value, …). Entries
	// flagged deleted inside the listpacks are not yielded.
	ElemStreamEntry
	// ElemStreamMeta follows the entries: Meta.
	ElemStreamMeta
	// ElemStreamGroup is a consumer group (Group), followed by its pending entries and
	// then its consumers.
	ElemStreamGroup
	// ElemStreamGroupPending is an entry of the group's PEL (Pending, without Consumer).
	ElemStreamGroupPending
	// ElemStreamConsumer is a consumer of the last group (Consumer), followed by its
	// pending entries.
	ElemStreamConsumer
	// ElemStreamConsumerPending is an entry of the last consumer's PEL, joined with
	// the group PEL's delivery time and count (Pending, with Group and Consumer).
	ElemStreamConsumerPending
)

// StreamID is a stream entry ID.
type StreamID struct{ Ms, Seq uint64 }

// String formats the ID as Redis does ("1528468399779-0").
func (id StreamID) String() string { return string(id.AppendTo(nil)) }

// AppendTo appends the formatted ID.
func (id StreamID) AppendTo(dst []byte) []byte {
	dst = strconv.AppendUint(dst, id.Ms, 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, id.Seq, 10)
}

func (id StreamID) isZero() bool { return id.Ms == 0 && id.Seq == 0 }

// StreamMeta is a stream's metadata.
type StreamMeta struct {
	Length uint64
	LastID StreamID
	// FirstID, MaxDeletedID and EntriesAdded are stored from stream v2 (RDB v10) on;
	// for older streams they are derived as Redis derives them on load (first live
	// entry, 0-0, Length) and FromFile is false.
	FirstID      StreamID
	MaxDeletedID StreamID
	EntriesAdded uint64
	FromFile     bool
}

// StreamGroup is a consumer group.
type StreamGroup struct {
	Name   []byte
	LastID StreamID
	// EntriesRead is the group's read counter; -1 means unknown (Redis did not know
	// it either). Stream v2+ (RDB v10) files store it; for older streams it is
	// estimated the way Redis estimates it when it loads them, and Estimated is set.
	EntriesRead int64
	Estimated   bool
}

// StreamConsumer is a consumer of a group.
type StreamConsumer struct {
	Group    []byte
	Name     []byte
	SeenTime int64 // Unix ms
	// ActiveTime is stored from stream v3 (RDB v11) on; before, Redis uses SeenTime.
	ActiveTime int64
}

// StreamPending is a pending-entries-list record.
type StreamPending struct {
	Group         []byte
	Consumer      []byte // only for ElemStreamConsumerPending
	ID            StreamID
	DeliveryTime  int64 // Unix ms of the last delivery
	DeliveryCount uint64
}

// Elem is one element of a value. It is owned by the Iterator and overwritten by the
// next call to Next; its slices are valid until then.
type Elem struct {
	Kind     ElemKind
	Member   []byte
	Value    []byte
	Score    float64
	ExpireAt int64
	Offset   int64
	ID       StreamID
	Fields   [][]byte
	Meta     StreamMeta
	Group    StreamGroup
	Consumer StreamConsumer
	Pending  StreamPending
}

type streamPhase uint8

const (
	stNodes streamPhase = iota
	stMeta
	stGroups
	stGroupPEL
	stConsumers
	stConsumerPEL
)

type nack struct {
	time  int64
	count uint64
}

// Iterator yields a value's elements one at a time, reading the input as it goes:
// memory is bounded by the largest single element (and, for streams, one consumer
// group's pending-entries list), not by the value.
type Iterator struct {
	d       *Decoder
	t       Type
	f       Flavor
	elem    Elem
	err     error
	started bool
	done    bool

	n         uint64 // items left (counted encodings, quicklist nodes, stream nodes)
	minExpire int64

	rsrc rdrSrc
	msrc memSrc
	src  byteSrc
	lp   listpackParser
	zl   ziplistParser
	is   intsetParser
	zm   zipmapParser
	cur  parser // active blob parser, nil between blobs
	p    prim

	strLeft int64
	strLZF  bool
	strOff  int64

	mbuf, vbuf []byte
	fbuf       []byte // stream entry fields, flat
	foff       []int

	// stream state
	phase      streamPhase
	master     StreamID
	masterBuf  []byte
	masterOff  []int
	firstLive  StreamID
	sawLive    bool
	isV2, isV3 bool
	groupsLeft uint64
	pelLeft    uint64
	consLeft   uint64
	cpelLeft   uint64
	groupName  []byte
	consName   []byte
	pel        map[StreamID]nack
	meta       StreamMeta
}

func (it *Iterator) reset(t Type, f Flavor) {
	it.t, it.f = t, f
	it.err, it.started, it.done = nil, false, false
	it.n, it.minExpire, it.cur, it.src = 0, 0, nil, nil
	it.strLeft, it.strLZF, it.strOff = 0, false, 0
	it.phase, it.sawLive, it.firstLive = stNodes, false, StreamID{}
	it.isV2 = t == TypeStreamListpacks2 || t == TypeStreamListpacks3
	it.isV3 = t == TypeStreamListpacks3
	clear(it.pel)
}

// Kind is the data type being iterated.
func (it *Iterator) Kind() Kind { return KindOf(it.f, it.t) }

// Elem returns the current element.
func (it *Iterator) Elem() *Elem { return &it.elem }

// Err returns the error that ended the iteration, if any.
func (it *Iterator) Err() error { return it.err }

// Next advances to the next element. It returns false at the end of the value or on
// error (see Err).
func (it *Iterator) Next() bool {
	if it.done {
		return false
	}
	ok, err := it.step()
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			err = it.d.errAt(it.d.rd.offset(), "value element", err)
		}
		it.err = it.d.fail(it.d.keyErr(err))
		it.done = true
		it.d.state = valueNone
		return false
	}
	if !ok {
		it.done = true
		if it.d.state == valueIterating {
			it.d.state = valueNone
		}
	}
	return ok
}

func (it *Iterator) step() (bool, error) {
	switch it.t {
	case TypeString:
		return it.stepString()
	case TypeList, TypeSet, TypeZSet, TypeZSet2, TypeHash:
		return it.stepCounted()
	case TypeListQuicklist, TypeListQuicklist2:
		return it.stepQuicklist()
	case TypeStreamListpacks, TypeStreamListpacks2, TypeStreamListpacks3:
		return it.stepStream()
	case TypeModule2, TypeModulePreGA:
		return false, causef(ErrUnsupported, "module %s values have no elements: only a RESTORE payload can carry them", it.d.entry.Module)
	case TypeHashZipmap, TypeListZiplist, TypeSetIntset, TypeZSetZiplist, TypeHashZiplist,
		TypeHashListpack, TypeZSetListpack, TypeSetListpack:
		return it.stepBlob()
	}
	if it.f == Valkey {
		if it.t == TypeValkeyHash2 {
			return it.stepCounted()
		}
	} else {
		switch it.t {
		case TypeHashMetadata, TypeHashMetadataPreGA:
			return it.stepCounted()
		case TypeHashListpackEx, TypeHashListpackExPre:
			return it.stepBlob()
		}
	}
	return false, causef(ErrUnsupported, "no reader for type %d", it.t)
}

// ---- strings ----

func (it *Iterator) stepString() (bool, error) {
	d := it.d
	e := &it.elem
	if !it.started {
		it.started = true
		*e = Elem{Kind: ElemChunk, ExpireAt: -1, Fields: e.Fields[:0]}
		n, enc, err := d.readLenEnc()
		if err != nil {
			return false, err
		}
		if !enc {
			if n > math.MaxInt64 {
				return false, ErrTruncated
			}
			if d.opts.Size > 0 && int64(n) > d.opts.Size-d.rd.offset() {
				return false, ErrTruncated
			}
			it.strLeft = int64(n)
			if n == 0 {
				e.Member = e.Member[:0]
				return true, nil
			}
		} else {
			switch n {
			case 0, 1, 2:
				v, err := d.readIntEnc(int(n))
				if err != nil {
					return false, err
				}
				it.mbuf = strconv.AppendInt(it.mbuf[:0], v, 10)
				e.Member = it.mbuf
				return true, nil
			case 3:
				clen, ulen, err := d.readLZFHeader()
				if err != nil {
					return false, err
				}
				d.lzf.reset(&d.rd, int64(clen), int64(ulen))
				it.strLZF, it.strLeft = true, int64(ulen)
				if ulen == 0 {
					e.Member = e.Member[:0]
					return true, d.lzf.produce(0)
				}
			default:
				return false, causef(ErrCorrupt, "unknown string encoding %d", n)
			}
		}
	}
	if it.strLeft == 0 {
		return false, nil
	}
	k := int64(d.opts.ChunkSize)
	if k > it.strLeft {
		k = it.strLeft
	}
	var b []byte
	var err error
	if it.strLZF {
		b, err = d.lzf.take(int(k))
	} else {
		b, err = d.rd.readN(int(k))
	}
	if err != nil {
		return false, err
	}
	e.Member, e.Offset = b, it.strOff
	it.strOff += k
	it.strLeft -= k
	if it.strLZF && it.strLeft == 0 && d.lzf.in != 0 {
		return false, causef(ErrCorrupt, "%d compressed bytes left after the string's end", d.lzf.in)
	}
	return true, nil
}

// ---- length-prefixed encodings ----

func (it *Iterator) readInto(buf *[]byte) ([]byte, error) {
	s, err := it.d.readString()
	if err != nil {
		return nil, err
	}
	*buf = append((*buf)[:0], s...)
	return *buf, nil
}

func (it *Iterator) stepCounted() (bool, error) {
	d := it.d
	e := &it.elem
	if !it.started {
		it.started = true
		if it.t == TypeHashMetadata && it.f == Redis {
			v, err := d.readMillis()
			if err != nil {
				return false, err
			}
			it.minExpire = v
		}
		n, err := d.readLen()
		if err != nil {
			return false, err
		}
		it.n = n
	}
	if it.n == 0 {
		return false, nil
	}
	it.n--
	e.ExpireAt, e.Score, e.Value = -1, 0, nil
	var err error
	switch it.t {
	case TypeList:
		e.Kind = ElemListItem
		e.Member, err = it.readInto(&it.mbuf)
	case TypeSet:
		e.Kind = ElemSetMember
		e.Member, err = it.readInto(&it.mbuf)
	case TypeZSet, TypeZSet2:
		e.Kind = ElemZSetMember
		if e.Member, err = it.readInto(&it.mbuf); err != nil {
			return false, err
		}
		if it.t == TypeZSet {
			e.Score, err = d.readDouble()
		} else {
			e.Score, err = d.readBinaryDouble()
		}
	case TypeHash:
		e.Kind = ElemHashField
		if e.Member, err = it.readInto(&it.mbuf); err != nil {
			return false, err
		}
		e.Value, err = it.readInto(&it.vbuf)
	default: // field-TTL hashes
		e.Kind = ElemHashField
		if it.f == Valkey { // HASH_2: field, value, absolute ms (-1: none)
			if e.Member, err = it.readInto(&it.mbuf); err != nil {
				return false, err
			}
			if e.Value, err = it.readInto(&it.vbuf); err != nil {
				return false, err
			}
			var ms int64
			if ms, err = d.readMillis(); err != nil {
				return false, err
			}
			if ms >= 0 {
				e.ExpireAt = ms
			}
			return true, nil
		}
		// Redis HASH_METADATA(_PRE_GA): ttl, field, value. GA stores ttl relative to
		// the hash's minimum expiry, plus one (0 = none); PRE_GA stores it absolute.
		var ttl uint64
		if ttl, err = d.readLen(); err != nil {
			return false, err
		}
		if ttl != 0 {
			if it.t == TypeHashMetadata {
				e.ExpireAt = int64(ttl) + it.minExpire - 1
			} else {
				e.ExpireAt = int64(ttl)
			}
		}
		if e.Member, err = it.readInto(&it.mbuf); err != nil {
			return false, err
		}
		e.Value, err = it.readInto(&it.vbuf)
	}
	return err == nil, err
}

// ---- single-blob encodings ----

func (it *Iterator) openParser(kind Type) error {
	d := it.d
	src, err := d.openBlob(&it.rsrc, &it.msrc)
	if err != nil {
		return err
	}
	it.src = src
	switch kind {
	case TypeHashZipmap:
		it.cur = &it.zm
		return it.zm.reset(src)
	case TypeListZiplist, TypeZSetZiplist, TypeHashZiplist, TypeListQuicklist:
		it.cur = &it.zl
		return it.zl.reset(src)
	case TypeSetIntset:
		it.cur = &it.is
		return it.is.reset(src)
	default:
		it.cur = &it.lp
		return it.lp.reset(src)
	}
}

// closeParser checks that an LZF-compressed blob was consumed exactly.
func (it *Iterator) closeParser() error {
	it.cur = nil
	if it.src == &it.d.lzf && it.d.lzf.in != 0 {
		return causef(ErrCorrupt, "%d compressed bytes left after the structure's end", it.d.lzf.in)
	}
	return nil
}

func (it *Iterator) stepBlob() (bool, error) {
	e := &it.elem
	if !it.started {
		it.started = true
		if it.t == TypeHashListpackEx {
			if _, err := it.d.readMillis(); err != nil { // min expire, informational
				return false, err
			}
		}
		if err := it.openParser(it.t); err != nil {
			return false, err
		}
	}
	if it.cur == nil {
		return false, nil
	}
	ok, err := it.cur.next(&it.p)
	if err != nil || !ok {
		if err == nil {
			err = it.closeParser()
		}
		return false, err
	}
	e.ExpireAt, e.Score, e.Value = -1, 0, nil
	it.mbuf = it.p.appendTo(it.mbuf[:0])
	e.Member = it.mbuf
	switch KindOf(it.f, it.t) {
	case KindList:
		e.Kind = ElemListItem
		return true, nil
	case KindSet:
		e.Kind = ElemSetMember
		return true, nil
	}
	if err := it.nextPrim("second half of a pair"); err != nil {
		return false, err
	}
	if KindOf(it.f, it.t) == KindZSet {
		e.Kind = ElemZSetMember
		e.Score, err = it.p.float()
		return err == nil, err
	}
	e.Kind = ElemHashField
	it.vbuf = it.p.appendTo(it.vbuf[:0])
	e.Value = it.vbuf
	if it.t == TypeHashListpackEx || it.t == TypeHashListpackExPre {
		if err := it.nextPrim("field TTL"); err != nil {
			return false, err
		}
		if !it.p.isInt {
			return false, causef(ErrCorrupt, "hash field TTL is not an integer")
		}
		if it.p.i != 0 { // HASH_LP_NO_TTL
			e.ExpireAt = it.p.i
		}
	}
	return true, nil
}

func (it *Iterator) nextPrim(what string) error {
	ok, err := it.cur.next(&it.p)
	if err != nil {
		return err
	}
	if !ok {
		return causef(ErrCorrupt, "structure ends before the %s", what)
	}
	return nil
}

// ---- quicklists ----

func (it *Iterator) stepQuicklist() (bool, error) {
	d := it.d
	e := &it.elem
	if !it.started {
		it.started = true
		n, err := d.readLen()
		if err != nil {
			return false, err
		}
		it.n = n
	}
	e.Kind, e.ExpireAt, e.Value = ElemListItem, -1, nil
	for {
		if it.cur != nil {
			ok, err := it.cur.next(&it.p)
			if err != nil {
				return false, err
			}
			if ok {
				it.mbuf = it.p.appendTo(it.mbuf[:0])
				e.Member = it.mbuf
				return true, nil
			}
			if err := it.closeParser(); err != nil {
				return false, err
			}
		}
		if it.n == 0 {
			return false, nil
		}
		it.n--
		if it.t == TypeListQuicklist2 {
			container, err := d.readLen()
			if err != nil {
				return false, err
			}
			switch container {
			case 1: // PLAIN: the node is one (large) element
				m, err := it.readInto(&it.mbuf)
				if err != nil {
					return false, err
				}
				e.Member = m
				return true, nil
			case 2: // PACKED: a listpack
				if err := it.openParser(TypeListQuicklist2); err != nil {
					return false, err
				}
			default:
				return false, causef(ErrCorrupt, "unknown quicklist container %d", container)
			}
		} else if err := it.openParser(TypeListQuicklist); err != nil {
			return false, err
		}
	}
}

// ---- streams ----

const (
	streamFlagDeleted   = 1 // STREAM_ITEM_FLAG_DELETED
	streamFlagSameField = 2 // STREAM_ITEM_FLAG_SAMEFIELDS
)

func (it *Iterator) primInt(what string) (int64, error) {
	if err := it.nextPrim(what); err != nil {
		return 0, err
	}
	if !it.p.isInt {
		return 0, causef(ErrCorrupt, "stream listpack: %s is not an integer", what)
	}
	return it.p.i, nil
}

func (it *Iterator) readStreamID() (StreamID, error) {
	b, err := it.d.rd.readN(16)
	if err != nil {
		return StreamID{}, err
	}
	return StreamID{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}, nil
}

func (it *Iterator) readLenID() (StreamID, error) {
	ms, err := it.d.readLen()
	if err != nil {
		return StreamID{}, err
	}
	seq, err := it.d.readLen()
	return StreamID{ms, seq}, err
}

func (it *Iterator) stepStream() (bool, error) {
	d := it.d
	e := &it.elem
	e.Member, e.Value, e.Score, e.ExpireAt, e.Offset, e.Fields = nil, nil, 0, -1, 0, e.Fields[:0]
	if !it.started {
		it.started = true
		n, err := d.readLen()
		if err != nil {
			return false, err
		}
		it.n = n
	}
	for {
		switch it.phase {
		case stNodes:
			if it.cur != nil {
				ok, err := it.streamEntry()
				if ok || err != nil {
					return ok, err
				}
				continue
			}
			if it.n == 0 {
				it.phase = stMeta
				continue
			}
			it.n--
			if err := it.openStreamNode(); err != nil {
				return false, err
			}
		case stMeta:
			m := &e.Meta
			length, err := d.readLen()
			if err != nil {
				return false, err
			}
			last, err := it.readLenID()
			if err != nil {
				return false, err
			}
			*m = StreamMeta{Length: length, LastID: last}
			if it.isV2 {
				if m.FirstID, err = it.readLenID(); err != nil {
					return false, err
				}
				if m.MaxDeletedID, err = it.readLenID(); err != nil {
					return false, err
				}
				if m.EntriesAdded, err = d.readLen(); err != nil {
					return false, err
				}
				m.FromFile = true
			} else {
				m.FirstID, m.EntriesAdded = it.firstLive, length
			}
			if it.groupsLeft, err = d.readLen(); err != nil {
				return false, err
			}
			e.Kind = ElemStreamMeta
			it.meta = *m
			it.phase = stGroups
			return true, nil
		case stGroups:
			if it.groupsLeft == 0 {
				return false, nil
			}
			it.groupsLeft--
			name, err := it.readInto(&it.groupName)
			if err != nil {
				return false, err
			}
			g := &e.Group
			*g = StreamGroup{Name: name}
			if g.LastID, err = it.readLenID(); err != nil {
				return false, err
			}
			if it.isV2 {
				v, err := d.readLen()
				if err != nil {
					return false, err
				}
				g.EntriesRead = int64(v)
			} else {
				g.EntriesRead, g.Estimated = estimateEntriesRead(&it.meta, g.LastID), true
			}
			if it.pelLeft, err = d.readLen(); err != nil {
				return false, err
			}
			if it.pel == nil {
				it.pel = make(map[StreamID]nack)
			}
			clear(it.pel)
			e.Kind = ElemStreamGroup
			it.phase = stGroupPEL
			return true, nil
		case stGroupPEL:
			if it.pelLeft == 0 {
				n, err := d.readLen()
				if err != nil {
					return false, err
				}
				it.consLeft = n
				it.phase = stConsumers
				continue
			}
			it.pelLeft--
			id, err := it.readStreamID()
			if err != nil {
				return false, err
			}
			t, err := d.readMillis()
			if err != nil {
				return false, err
			}
			cnt, err := d.readLen()
			if err != nil {
				return false, err
			}
			if _, dup := it.pel[id]; dup {
				return false, causef(ErrCorrupt, "pending entry %s listed twice in group %q", id, it.groupName)
			}
			it.pel[id] = nack{t, cnt}
			e.Kind = ElemStreamGroupPending
			e.Pending = StreamPending{Group: it.groupName, ID: id, DeliveryTime: t, DeliveryCount: cnt}
			return true, nil
		case stConsumers:
			if it.consLeft == 0 {
				it.phase = stGroups
				continue
			}
			it.consLeft--
			name, err := it.readInto(&it.consName)
			if err != nil {
				return false, err
			}
			seen, err := d.readMillis()
			if err != nil {
				return false, err
			}
			active := seen
			if it.isV3 {
				if active, err = d.readMillis(); err != nil {
					return false, err
				}
			}
			if it.cpelLeft, err = d.readLen(); err != nil {
				return false, err
			}
			e.Kind = ElemStreamConsumer
			e.Consumer = StreamConsumer{Group: it.groupName, Name: name, SeenTime: seen, ActiveTime: active}
			it.phase = stConsumerPEL
			return true, nil
		case stConsumerPEL:
			if it.cpelLeft == 0 {
				it.phase = stConsumers
				continue
			}
			it.cpelLeft--
			id, err := it.readStreamID()
			if err != nil {
				return false, err
			}
			na, ok := it.pel[id]
			if !ok {
				return false, causef(ErrCorrupt, "consumer %q pending entry %s is not in group %q's PEL", it.consName, id, it.groupName)
			}
			e.Kind = ElemStreamConsumerPending
			e.Pending = StreamPending{Group: it.groupName, Consumer: it.consName, ID: id,
				DeliveryTime: na.time, DeliveryCount: na.count}
			return true, nil
		}
	}
}

// openStreamNode reads a node's master ID and opens its listpack, consuming the master
// entry: count, deleted count, master field names, and a 0 terminator.
func (it *Iterator) openStreamNode() error {
	key, err := it.d.readString()
	if err != nil {
		return err
	}
	if len(key) != 16 {
		return causef(ErrCorrupt, "stream node key of %d bytes, expected a 16-byte ID", len(key))
	}
	it.master = StreamID{binary.BigEndian.Uint64(key), binary.BigEndian.Uint64(key[8:])}
	if err := it.openParser(TypeStreamListpacks); err != nil {
		return err
	}
	if _, err := it.primInt("master entry count"); err != nil {
		return err
	}
	if _, err := it.primInt("master deleted count"); err != nil {
		return err
	}
	nf, err := it.primInt("master field count")
	if err != nil {
		return err
	}
	if nf < 0 || nf > it.src.left() {
		return causef(ErrCorrupt, "stream master entry with %d fields", nf)
	}
	it.masterBuf, it.masterOff = it.masterBuf[:0], append(it.masterOff[:0], 0)
	for i := int64(0); i < nf; i++ {
		if err := it.nextPrim("master field"); err != nil {
			return err
		}
		it.masterBuf = it.p.appendTo(it.masterBuf)
		it.masterOff = append(it.masterOff, len(it.masterBuf))
	}
	if z, err := it.primInt("master entry terminator"); err != nil || z != 0 {
		if err == nil {
			err = causef(ErrCorrupt, "stream master entry terminator is %d, not 0", z)
		}
		return err
	}
	return nil
}

// streamEntry reads entries of the current node until a live one (true) or the node's
// end (false).
func (it *Iterator) streamEntry() (bool, error) {
	e := &it.elem
	for {
		ok, err := it.cur.next(&it.p)
		if err != nil {
			return false, err
		}
		if !ok {
			return false, it.closeParser()
		}
		if !it.p.isInt {
			return false, causef(ErrCorrupt, "stream entry flags are not an integer")
		}
		flags := it.p.i
		msd, err := it.primInt("entry ID ms delta")
		if err != nil {
			return false, err
		}
		seqd, err := it.primInt("entry ID seq delta")
		if err != nil {
			return false, err
		}
		id := StreamID{it.master.Ms + uint64(msd), it.master.Seq + uint64(seqd)}
		it.fbuf, it.foff = it.fbuf[:0], append(it.foff[:0], 0)
		if flags&streamFlagSameField != 0 {
			nf := len(it.masterOff) - 1
			for i := 0; i < nf; i++ {
				it.fbuf = append(it.fbuf, it.masterBuf[it.masterOff[i]:it.masterOff[i+1]]...)
				it.foff = append(it.foff, len(it.fbuf))
				if err := it.nextPrim("entry value"); err != nil {
					return false, err
				}
				it.fbuf = it.p.appendTo(it.fbuf)
				it.foff = append(it.foff, len(it.fbuf))
			}
		} else {
			nf, err := it.primInt("entry field count")
			if err != nil {
				return false, err
			}
			if nf < 0 || nf > it.src.left() {
				return false, causef(ErrCorrupt, "stream entry with %d fields", nf)
			}
			for i := int64(0); i < 2*nf; i++ {
				if err := it.nextPrim("entry field"); err != nil {
					return false, err
				}
				it.fbuf = it.p.appendTo(it.fbuf)
				it.foff = append(it.foff, len(it.fbuf))
			}
		}
		if _, err := it.primInt("entry lp-count"); err != nil {
			return false, err
		}
		if flags&streamFlagDeleted != 0 {
			continue
		}
		if !it.sawLive {
			it.sawLive, it.firstLive = true, id
		}
		e.Kind, e.ID, e.ExpireAt = ElemStreamEntry, id, -1
		e.Fields = e.Fields[:0]
		for i := 0; i+1 < len(it.foff); i++ {
			e.Fields = append(e.Fields, it.fbuf[it.foff[i]:it.foff[i+1]:it.foff[i+1]])
		}
		return true, nil
	}
}

func cmpID(a, b StreamID) int {
	switch {
	case a.Ms != b.Ms:
		if a.Ms < b.Ms {
			return -1
		}
		return 1
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// estimateEntriesRead is what Redis computes for a group's entries-read when it loads
// a stream written before entries-read was stored
// (streamEstimateDistanceFromFirstEverEntry in t_stream.c).
func estimateEntriesRead(m *StreamMeta, id StreamID) int64 {
	const unknown = -1
	added := int64(m.EntriesAdded)
	if added == 0 {
		return 0
	}
	if m.Length == 0 && cmpID(id, m.LastID) <= 0 {
		return added
	}
	switch c := cmpID(id, m.LastID); {
	case c == 0:
		return added
	case c > 0:
		return unknown
	}
	if m.MaxDeletedID.isZero() || cmpID(m.MaxDeletedID, m.FirstID) < 0 {
		switch c := cmpID(id, m.FirstID); {
		case c < 0:
			return added - int64(m.Length)
		case c == 0:
			return added - int64(m.Length) + 1
		}
	}
	return unknown
}
