package rdb

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Defaults for CommandOptions.
const (
	DefaultMaxElements = 512
	DefaultMaxBytes    = 1 << 20
)

// CommandOptions configure the command path.
type CommandOptions struct {
	// Target decides which command forms are used: XSETID ENTRIESADDED/MAXDELETEDID and
	// XGROUP CREATE ENTRIESREAD need RDB v10+ destinations (Redis 7.0, Valkey 7.2),
	// HPEXPIREAT needs Redis 7.4+ or Valkey 9+.
	Target Target
	// MaxElements caps the elements (members, pairs) per command. Default 512.
	MaxElements int
	// MaxBytes caps the argument bytes per command; a single element larger than it
	// still goes in one command. Default 1 MiB.
	MaxBytes int
	// DropFieldTTLs writes hashes with field TTLs to destinations without HPEXPIREAT,
	// losing the TTLs, instead of failing. Fields whose TTL has already passed are left
	// out, as the source would have expired them.
	DropFieldTTLs bool
	// Now is the clock for DropFieldTTLs; default time.Now.
	Now func() time.Time
}

// CommandWriter turns values into write commands in bounded chunks: the command path,
// for values a destination cannot RESTORE and for values too big for one payload.
//
// For every key it emits DEL key first (so a re-run never appends twice), then
//
//	string  SET key <chunk>, APPEND key <chunk>…  (HyperLogLogs are strings)
//	list    RPUSH key e…
//	set     SADD key m…
//	zset    ZADD key score member…
//	hash    HSET key f v…, then HPEXPIREAT key ms FIELDS n f… for field TTLs
//	stream  XADD key id f v… per live entry; XSETID key last-id [ENTRIESADDED n
//	        MAXDELETEDID id]; XGROUP CREATE key g id [ENTRIESREAD n]; XGROUP
//	        CREATECONSUMER key g c; XCLAIM key g c 0 id TIME ms RETRYCOUNT n FORCE JUSTID
//	        per pending entry
//
// and finally PEXPIREAT key ms when the key has an expiry. The commands of one key are
// not atomic; wrap them in MULTI/EXEC if readers must not see a half-written key.
//
// What commands cannot reproduce: LRU/LFU metadata (no command sets them), stream
// consumers' seen/active times (XCLAIM and CREATECONSUMER set them to now), pending
// entries whose message was deleted (XCLAIM skips them), and an empty stream's
// creation needs XGROUP CREATE … MKSTREAM (a temporary group, destroyed at once).
// Streams need Redis 6.2+ (XGROUP CREATECONSUMER). Module values cannot be written
// as commands at all.
type CommandWriter struct {
	opts CommandOptions

	data []byte
	ends []int
	args [][]byte
	nel  int // elements in the command being built
	head int // fixed arguments (command, key)

	ttls    []fieldTTL
	ttlData []byte
	key     []byte
}

type fieldTTL struct {
	at         int64
	start, end int // field bytes in ttlData
}

// NewCommandWriter returns a writer with opts (zero fields take their defaults).
func NewCommandWriter(opts CommandOptions) *CommandWriter {
	if opts.MaxElements <= 0 {
		opts.MaxElements = DefaultMaxElements
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	return &CommandWriter{opts: opts}
}

// WriteValue reads the decoder's current value (Next must have returned a key whose
// value is unread) and calls emit with each command. args are only valid during the
// call: the writer reuses their memory for the next command. An error from emit stops
// the writing and is returned as is.
func (w *CommandWriter) WriteValue(d *Decoder, emit func(args [][]byte) error) error {
	e := &d.entry
	if e.Record != RecordKey {
		return errors.New("rdb: WriteValue needs a key entry")
	}
	if e.Kind() == KindModule {
		return d.keyErr(d.errAt(e.Offset, "command path", causef(ErrUnsupported,
			"module %s values can only travel as RESTORE payloads to a server with the module", e.Module)))
	}
	if hasFieldTTLs(e.Flavor, e.Type) && !w.opts.Target.supportsFieldTTL() && !w.opts.DropFieldTTLs {
		// Checked before anything is emitted, so a refusal leaves no half-written key.
		return d.keyErr(d.errAt(e.Offset, "command path", causef(ErrUnsupported,
			"hash field TTLs need HPEXPIREAT (Redis 7.4+, Valkey 9+) and the destination is %s RDB v%d; set DropFieldTTLs to write the hash without them",
			w.opts.Target.Flavor, w.opts.Target.Version)))
	}
	it, err := d.Iter()
	if err != nil {
		return err
	}
	w.key = append(w.key[:0], e.Key...)
	var emitErr error
	err = w.write(e, it, func(args [][]byte) error {
		emitErr = emit(args)
		return emitErr
	})
	switch {
	case err == nil:
		return it.Err()
	case err == emitErr:
		return err
	}
	var de *Error
	if !errors.As(err, &de) {
		err = d.keyErr(d.errAt(d.rd.offset(), "command path", err))
	}
	return err
}

// ---- command assembly ----

func (w *CommandWriter) begin(parts ...string) {
	w.data, w.ends, w.nel = w.data[:0], w.ends[:0], 0
	for _, p := range parts {
		w.data = append(w.data, p...)
		w.ends = append(w.ends, len(w.data))
	}
	w.data = append(w.data, w.key...)
	w.ends = append(w.ends, len(w.data))
	w.head = len(w.ends)
}

func (w *CommandWriter) arg(b []byte) {
	w.data = append(w.data, b...)
	w.ends = append(w.ends, len(w.data))
}

func (w *CommandWriter) argString(s string) {
	w.data = append(w.data, s...)
	w.ends = append(w.ends, len(w.data))
}

func (w *CommandWriter) argInt(v int64) {
	w.data = strconv.AppendInt(w.data, v, 10)
	w.ends = append(w.ends, len(w.data))
}

func (w *CommandWriter) argUint(v uint64) {
	w.data = strconv.AppendUint(w.data, v, 10)
	w.ends = append(w.ends, len(w.data))
}

func (w *CommandWriter) argID(id StreamID) {
	w.data = id.AppendTo(w.data)
	w.ends = append(w.ends, len(w.data))
}

func (w *CommandWriter) argScore(f float64) error {
	switch {
	case math.IsNaN(f):
		return causef(ErrCorrupt, "zset score is NaN, which no Redis stores")
	case math.IsInf(f, 1):
		w.argString("inf")
	case math.IsInf(f, -1):
		w.argString("-inf")
	default:
		w.data = strconv.AppendFloat(w.data, f, 'g', -1, 64)
		w.ends = append(w.ends, len(w.data))
	}
	return nil
}

// full reports whether the command under construction reached a chunk limit.
func (w *CommandWriter) full() bool {
	return w.nel >= w.opts.MaxElements || len(w.data) >= w.opts.MaxBytes
}

func (w *CommandWriter) flush(emit func([][]byte) error) error {
	w.args = w.args[:0]
	prev := 0
	for _, end := range w.ends {
		w.args = append(w.args, w.data[prev:end:end])
		prev = end
	}
	w.data, w.ends, w.nel = w.data[:0], w.ends[:0], 0
	return emit(w.args)
}

// simple emits one command made of parts and the key, then rest.
func (w *CommandWriter) simple(emit func([][]byte) error, parts ...string) error {
	w.begin(parts...)
	return w.flush(emit)
}

// ---- per type ----

func (w *CommandWriter) write(e *Entry, it *Iterator, emit func([][]byte) error) error {
	if err := w.simple(emit, "DEL"); err != nil {
		return err
	}
	var err error
	switch e.Kind() {
	case KindString:
		err = w.writeString(it, emit)
	case KindList:
		err = w.writeMembers(it, emit, "RPUSH")
	case KindSet:
		err = w.writeMembers(it, emit, "SADD")
	case KindZSet:
		err = w.writeZSet(it, emit)
	case KindHash:
		err = w.writeHash(it, emit)
	case KindStream:
		err = w.writeStream(it, emit)
	default:
		err = fmt.Errorf("rdb: no command path for type %d", e.Type)
	}
	if err != nil {
		return err
	}
	if it.Err() != nil {
		return it.Err()
	}
	if e.ExpireAt >= 0 {
		w.begin("PEXPIREAT")
		w.argInt(e.ExpireAt)
		return w.flush(emit)
	}
	return nil
}

func (w *CommandWriter) writeString(it *Iterator, emit func([][]byte) error) error {
	cmd := "SET"
	w.begin(cmd)
	valStart := len(w.data)
	for it.Next() {
		w.data = append(w.data, it.Elem().Member...)
		if len(w.data)-valStart >= w.opts.MaxBytes {
			w.ends = append(w.ends, len(w.data))
			if err := w.flush(emit); err != nil {
				return err
			}
			cmd = "APPEND"
			w.begin(cmd)
			valStart = len(w.data)
		}
	}
	if it.Err() != nil {
		return it.Err()
	}
	if cmd == "APPEND" && len(w.data) == valStart {
		return nil // the last flush ended exactly at the string's end
	}
	w.ends = append(w.ends, len(w.data))
	return w.flush(emit)
}

func (w *CommandWriter) writeMembers(it *Iterator, emit func([][]byte) error, cmd string) error {
	w.begin(cmd)
	for it.Next() {
		w.arg(it.Elem().Member)
		w.nel++
		if w.full() {
			if err := w.flush(emit); err != nil {
				return err
			}
			w.begin(cmd)
		}
	}
	return w.flushRest(it, emit)
}

// flushRest emits a command that has elements after its head.
func (w *CommandWriter) flushRest(it *Iterator, emit func([][]byte) error) error {
	if it.Err() != nil {
		return it.Err()
	}
	if len(w.ends) > w.head {
		return w.flush(emit)
	}
	return nil
}

func (w *CommandWriter) writeZSet(it *Iterator, emit func([][]byte) error) error {
	w.begin("ZADD")
	for it.Next() {
		el := it.Elem()
		if err := w.argScore(el.Score); err != nil {
			return fmt.Errorf("member %q: %w", truncKey(el.Member), err)
		}
		w.arg(el.Member)
		w.nel++
		if w.full() {
			if err := w.flush(emit); err != nil {
				return err
			}
			w.begin("ZADD")
		}
	}
	return w.flushRest(it, emit)
}

func (w *CommandWriter) writeHash(it *Iterator, emit func([][]byte) error) error {
	w.ttls, w.ttlData = w.ttls[:0], w.ttlData[:0]
	dropping := !w.opts.Target.supportsFieldTTL()
	var now int64
	if dropping {
		clock := w.opts.Now
		if clock == nil {
			clock = time.Now
		}
		now = clock().UnixMilli()
	}
	w.begin("HSET")
	for it.Next() {
		el := it.Elem()
		if dropping && el.ExpireAt >= 0 && el.ExpireAt <= now {
			continue
		}
		w.arg(el.Member)
		w.arg(el.Value)
		w.nel++
		if el.ExpireAt >= 0 && w.opts.Target.supportsFieldTTL() {
			start := len(w.ttlData)
			w.ttlData = append(w.ttlData, el.Member...)
			w.ttls = append(w.ttls, fieldTTL{el.ExpireAt, start, len(w.ttlData)})
		}
		if w.full() {
			if err := w.flushHash(emit); err != nil {
				return err
			}
		}
	}
	if it.Err() != nil {
		return it.Err()
	}
	if len(w.ends) > w.head {
		return w.flushHash(emit)
	}
	return nil
}

// flushHash emits the HSET being built, then HPEXPIREAT for its fields with TTLs,
// one command per distinct expiry time.
func (w *CommandWriter) flushHash(emit func([][]byte) error) error {
	if err := w.flush(emit); err != nil {
		return err
	}
	if len(w.ttls) > 0 {
		slices.SortStableFunc(w.ttls, func(a, b fieldTTL) int {
			switch {
			case a.at < b.at:
				return -1
			case a.at > b.at:
				return 1
			}
			return 0
		})
		for i := 0; i < len(w.ttls); {
			j := i
			for j < len(w.ttls) && w.ttls[j].at == w.ttls[i].at {
				j++
			}
			w.begin("HPEXPIREAT")
			w.argInt(w.ttls[i].at)
			w.argString("FIELDS")
			w.argInt(int64(j - i))
			for _, f := range w.ttls[i:j] {
				w.arg(w.ttlData[f.start:f.end])
			}
			if err := w.flush(emit); err != nil {
				return err
			}
			i = j
		}
	}
	w.ttls, w.ttlData = w.ttls[:0], w.ttlData[:0]
	w.begin("HSET")
	return nil
}

// streamTmpGroup creates an empty stream (XGROUP CREATE … MKSTREAM needs a group).
const streamTmpGroup = "ferry-restore-tmp-group"

func (w *CommandWriter) writeStream(it *Iterator, emit func([][]byte) error) error {
	v2 := w.opts.Target.streamsV2()
	added := false
	for it.Next() {
		el := it.Elem()
		switch el.Kind {
		case ElemStreamEntry:
			w.begin("XADD")
			w.argID(el.ID)
			for _, f := range el.Fields {
				w.arg(f)
			}
			if err := w.flush(emit); err != nil {
				return err
			}
			added = true
		case ElemStreamMeta:
			m := &el.Meta
			if !added {
				w.begin("XGROUP", "CREATE")
				w.argString(streamTmpGroup)
				w.argString("0")
				w.argString("MKSTREAM")
				if err := w.flush(emit); err != nil {
					return err
				}
				w.begin("XGROUP", "DESTROY")
				w.argString(streamTmpGroup)
				if err := w.flush(emit); err != nil {
					return err
				}
			}
			w.begin("XSETID")
			w.argID(m.LastID)
			if v2 {
				w.argString("ENTRIESADDED")
				w.argUint(m.EntriesAdded)
				if !m.MaxDeletedID.isZero() {
					w.argString("MAXDELETEDID")
					w.argID(m.MaxDeletedID)
				}
			}
			if err := w.flush(emit); err != nil {
				return err
			}
		case ElemStreamGroup:
			g := &el.Group
			w.begin("XGROUP", "CREATE")
			w.arg(g.Name)
			w.argID(g.LastID)
			if v2 {
				w.argString("ENTRIESREAD")
				w.argInt(g.EntriesRead)
			}
			if err := w.flush(emit); err != nil {
				return err
			}
		case ElemStreamConsumer:
			w.begin("XGROUP", "CREATECONSUMER")
			w.arg(el.Consumer.Group)
			w.arg(el.Consumer.Name)
			if err := w.flush(emit); err != nil {
				return err
			}
		case ElemStreamConsumerPending:
			p := &el.Pending
			w.begin("XCLAIM")
			w.arg(p.Group)
			w.arg(p.Consumer)
			w.argString("0")
			w.argID(p.ID)
			w.argString("TIME")
			w.argInt(p.DeliveryTime)
			w.argString("RETRYCOUNT")
			w.argUint(p.DeliveryCount)
			w.argString("FORCE")
			w.argString("JUSTID")
			if err := w.flush(emit); err != nil {
				return err
			}
		}
	}
	return it.Err()
}

// hasFieldTTLs reports the hash types that carry field expiry times.
func hasFieldTTLs(f Flavor, t Type) bool {
	if f == Valkey {
		return t == TypeValkeyHash2
	}
	return t >= TypeHashMetadataPreGA && t <= TypeHashListpackEx
}
