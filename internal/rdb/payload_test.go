package rdb

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// TestBuildFromMatchesBuild: for every value of every fixture, read through buffers and
// readers of several shapes (so values straddle refills and compactions), the payload
// BuildFrom derives from the running checksum is byte for byte the one Build computes;
// a raw that is not the last Raw's, and a decoder without checksums, fall back to Build.
func TestBuildFromMatchesBuild(t *testing.T) {
	for _, name := range fixtureFiles(t) {
		if _, neg := negativeFixtures[name]; neg {
			continue
		}
		data := readFixture(t, name)
		for _, tc := range []struct {
			what string
			r    io.Reader
			opts Options
		}{
			{"one read", bytes.NewReader(data), Options{Size: int64(len(data))}},
			{"16-byte buffer", bytes.NewReader(data), Options{BufferSize: 16}},
			{"half reads", iotest.HalfReader(bytes.NewReader(data)), Options{BufferSize: 37}},
			{"no checksum", bytes.NewReader(data), Options{SkipChecksum: true}},
		} {
			if tc.what != "one read" && len(data) > 64<<10 {
				continue // the large fixtures take seconds under -race through small reads
			}
			d := NewDecoder(tc.r, tc.opts)
			var p, q Payload
			var other []byte // a copy's memory, never the decoder's
			keys, derived := 0, 0
			for {
				e, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s with %s: %v", name, tc.what, err)
				}
				if e.Record != RecordKey {
					continue
				}
				raw, ok, err := d.Raw(1 << 30)
				if err != nil || !ok {
					t.Fatalf("%s with %s: key %q: Raw: %v %v", name, tc.what, e.Key, ok, err)
				}
				want := append([]byte(nil), q.Build(e.Type, raw, 9)...)
				if got := p.BuildFrom(d, e.Type, raw, 9); !bytes.Equal(got, want) {
					t.Fatalf("%s with %s: key %q: BuildFrom\n%x\nBuild\n%x", name, tc.what, e.Key, got, want)
				}
				keys++
				if d.rawSum.raw != nil {
					derived++
				}
				// A copy of the raw is another slice: Build's way, same bytes.
				other = append(other[:0], raw...)
				if got := p.BuildFrom(d, e.Type, other, 9); !bytes.Equal(got, want) {
					t.Fatalf("%s with %s: key %q: BuildFrom of a copy differs", name, tc.what, e.Key)
				}
			}
			switch {
			case tc.opts.SkipChecksum && derived != 0:
				t.Fatalf("%s with %s: %d payloads derived without a running checksum", name, tc.what, derived)
			case !tc.opts.SkipChecksum && d.Header().Version >= 5 && derived != keys:
				t.Fatalf("%s with %s: %d of %d payloads derived", name, tc.what, derived, keys)
			}
		}
	}
}
