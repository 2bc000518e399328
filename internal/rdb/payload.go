package rdb

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/ferrysync/ferry/internal/crc"
)

// PayloadVersion chooses the RDB version to label a RESTORE payload with, for a value
// of type t from a file of flavor src, going to dst. It returns ErrNeedsCommands when
// the destination cannot load the type (a Redis 7.4 field-TTL hash into Valkey, a
// listpack set into Redis 7.0, any value into a server older than its encoding…):
// the value must then go through the command path.
//
// A loader accepts a payload whose version is at most its own and whose type it knows;
// the version inside a payload changes nothing else about decoding. So the label is the
// destination's own version — except that Valkey 9 treats 12–79 as a foreign (Redis)
// range it refuses by default, so payloads for it that need no Valkey-only type are
// labelled 11.
func PayloadVersion(src Flavor, t Type, dst Target) (int, error) {
	if t == TypeModulePreGA {
		return 0, fmt.Errorf("type %d (MODULE_PRE_GA): %w", t, ErrUnsupported)
	}
	if !dst.knows(src, t) {
		return 0, fmt.Errorf("%s %s value into %s RDB v%d: %w", src, TypeName(src, t), dst.Flavor, dst.Version, ErrNeedsCommands)
	}
	v := dst.Version
	if dst.Flavor == Valkey && v > 11 && typeTable(src)[t].minVersion <= 11 {
		v = 11
	}
	return v, nil
}

// Payload builds DUMP/RESTORE payloads and RESTORE commands into reusable buffers:
// after warm-up, building a payload and its command allocates nothing. A Payload is not
// safe for concurrent use; the slices it returns are valid until its next call.
type Payload struct {
	buf  []byte
	num  []byte
	args [][]byte
}

// Build returns type byte + raw + version (2 bytes LE) + CRC64 (8 bytes LE) — the
// format DUMP produces and RESTORE takes. raw is a value's bytes as Decoder.Raw
// returns them.
func (p *Payload) Build(t Type, raw []byte, version int) []byte {
	b := append(p.buf[:0], byte(t))
	b = append(b, raw...)
	b = binary.LittleEndian.AppendUint16(b, uint16(version))
	b = binary.LittleEndian.AppendUint64(b, crc.CRC64(0, b))
	p.buf = b
	return b
}

// BuildFrom is Build for the raw bytes the last d.Raw returned, with the CRC64 derived
// from the decoder's running checksum of its input (crc.Shift64) rather than computed over
// the value again: the file's checksum already hashes every byte once. Any other raw, or
// a decoder that does not checksum (SkipChecksum, files before RDB v5), takes Build's way.
func (p *Payload) BuildFrom(d *Decoder, t Type, raw []byte, version int) []byte {
	s := &d.rawSum
	if len(raw) == 0 || len(s.raw) != len(raw) || &s.raw[0] != &raw[0] {
		return p.Build(t, raw, version)
	}
	b := append(p.buf[:0], byte(t))
	// CRC64(0, t‖raw) = CRC64(CRC64(0, t), raw) = CRC64(0, raw) ^ Shift64(CRC64(0, t), n),
	// and CRC64(0, raw) = after ^ Shift64(before, n).
	sum := s.after ^ crc.Shift64(s.before^crc.CRC64(0, b), int64(len(raw)))
	b = append(b, raw...)
	b = binary.LittleEndian.AppendUint16(b, uint16(version))
	sum = crc.CRC64(sum, b[len(b)-2:])
	b = binary.LittleEndian.AppendUint64(b, sum)
	p.buf = b
	return b
}

var (
	argRestore  = []byte("RESTORE")
	argZero     = []byte("0")
	argReplace  = []byte("REPLACE")
	argAbsTTL   = []byte("ABSTTL")
	argIdleTime = []byte("IDLETIME")
	argFreq     = []byte("FREQ")
)

// RestoreArgs returns
//
//	RESTORE key <expireAt|0> payload REPLACE [ABSTTL] [IDLETIME s | FREQ f]
//
// expireAt is absolute Unix ms (-1: none); idle (seconds) and freq are used when >= 0,
// idle taking precedence as a file carries one or the other. REPLACE makes a re-run
// idempotent. ABSTTL and IDLETIME/FREQ need Redis 5.0+. The returned slice and the
// number arguments are reused by the next call.
func (p *Payload) RestoreArgs(key, payload []byte, expireAt, idle int64, freq int) [][]byte {
	// Two int64s fit in 40 bytes: with this capacity the appends below never move the
	// buffer, so earlier slices of it stay valid.
	if cap(p.num) < 48 {
		p.num = make([]byte, 0, 48)
	}
	num := p.num[:0]
	a := append(p.args[:0], argRestore, key)
	if expireAt >= 0 {
		// RESTORE reads a TTL of 0 as "no expiry": a key that expired at the epoch
		// must still arrive expired (and so not be created).
		num = strconv.AppendInt(num, max(expireAt, 1), 10)
		a = append(a, num, payload, argReplace, argAbsTTL)
	} else {
		a = append(a, argZero, payload, argReplace)
	}
	switch {
	case idle >= 0:
		start := len(num)
		num = strconv.AppendInt(num, idle, 10)
		a = append(a, argIdleTime, num[start:])
	case freq >= 0:
		start := len(num)
		num = strconv.AppendInt(num, int64(freq), 10)
		a = append(a, argFreq, num[start:])
	}
	p.args = a
	return a
}

// FunctionLoadArgs returns FUNCTION LOAD REPLACE <code> for a RecordFunction's Value.
func FunctionLoadArgs(code []byte) [][]byte {
	return [][]byte{[]byte("FUNCTION"), []byte("LOAD"), []byte("REPLACE"), code}
}
