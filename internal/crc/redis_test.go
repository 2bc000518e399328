package crc_test

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/crc"
	"github.com/ferrysync/ferry/internal/testutil"
)

// This test lives in package crc_test: testutil depends on crc (through command), so an
// in-package test could not import it.

// TestCRC64MatchesDumpPayloads checks CRC64 against the real thing: every DUMP
// payload ends with the CRC64 of all bytes before it, little-endian.
func TestCRC64MatchesDumpPayloads(t *testing.T) {
	s := testutil.StartServer(t)
	s.Do(t, "SET", "int", "12345")
	s.Do(t, "SET", "short", "hello")
	s.Do(t, "SET", "long", strings.Repeat("0123456789abcdef", 300)+"xyz") // LZF-compressed
	random := make([]byte, 777)
	for i := range random {
		random[i] = byte(rand.N(256))
	}
	s.Do(t, "SET", "random", random)
	s.Do(t, "RPUSH", "list", "a", "b", "c")
	s.Do(t, "HSET", "hash", "f1", "v1", "f2", "v2")
	s.Do(t, "SADD", "set", "1", "2", "3", "x")
	s.Do(t, "ZADD", "zset", "1.5", "m1", "2", "m2")
	for _, key := range []string{"int", "short", "long", "random", "list", "hash", "set", "zset"} {
		payload := s.Do(t, "DUMP", key).Str
		if len(payload) < 10 {
			t.Fatalf("DUMP %s: payload too short: %q", key, payload)
		}
		body, trailer := payload[:len(payload)-8], payload[len(payload)-8:]
		want := binary.LittleEndian.Uint64(trailer)
		if got := crc.CRC64(0, body); got != want {
			t.Errorf("DUMP %s (%d bytes): CRC64 = %#016x, server wrote %#016x", key, len(payload), got, want)
		}
	}
}
