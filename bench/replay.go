package main

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/resp"
)

// replaySet is the replay of one dataset: the same RESTORE commands in one file, and
// spread by a hash of the key over len(parts) files for a replay over that many
// connections (as Ferry's loader spreads them).
type replaySet struct {
	one   string
	n     int64
	parts []string
	partN []int64
	// clusterParts[i] holds the commands for the keys that master i of the bench's
	// cluster owns (FUNCTION LOAD goes to every master).
	clusterParts []string
	clusterN     []int64
}

// buildReplay writes, for every key of the RDB at rdbPath, the RESTORE command Ferry
// would send for it (the same raw payload bytes, TTL and flags), encoded as RESP,
// whatever its size: the ideal client replays them without any per-key work. Function
// libraries, if any, go first as FUNCTION LOAD (in the first part).
func buildReplay(rdbPath, prefix string, conns int, target rdb.Target) (*replaySet, error) {
	in, err := os.Open(rdbPath)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return nil, err
	}
	rs := &replaySet{one: prefix + ".resp", partN: make([]int64, conns), clusterN: make([]int64, clusterMasters)}
	var ws []*bufio.Writer // the single file, the conns parts, the cluster parts
	for i := range 1 + conns + clusterMasters {
		name := rs.one
		switch {
		case i > conns:
			name = fmt.Sprintf("%s.master%d.resp", prefix, i-conns-1)
			rs.clusterParts = append(rs.clusterParts, name)
		case i > 0:
			name = fmt.Sprintf("%s.%dof%d.resp", prefix, i, conns)
			rs.parts = append(rs.parts, name)
		}
		f, err := os.Create(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		ws = append(ws, bufio.NewWriterSize(f, 1<<20))
	}
	dec := rdb.NewDecoder(bufio.NewReaderSize(in, 1<<20), rdb.Options{Size: st.Size()})
	seed := maphash.MakeSeed()
	allMasters := make([]int, clusterMasters)
	for i := range allMasters {
		allMasters[i] = i
	}
	var p rdb.Payload
	var buf []byte
	for {
		e, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", rdbPath, err)
		}
		var args [][]byte
		part := 0
		masters := allMasters
		switch e.Record {
		case rdb.RecordFunction:
			args = rdb.FunctionLoadArgs(e.Value)
		case rdb.RecordKey:
			version, err := rdb.PayloadVersion(dec.Header().Flavor, e.Type, target)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", e.Key, err)
			}
			raw, ok, err := dec.Raw(1 << 30)
			if err != nil || !ok {
				return nil, fmt.Errorf("key %q: raw value: %v", e.Key, err)
			}
			args = p.RestoreArgs(e.Key, p.Build(e.Type, raw, version), e.ExpireAt, e.Idle, e.Freq)
			part = int(maphash.Bytes(seed, e.Key) % uint64(conns))
			masters = allMasters[clusterPart(e.Key):][:1]
		default:
			continue
		}
		buf = resp.AppendCommand(buf[:0], args...)
		for _, i := range []int{0, 1 + part} {
			if _, err := ws[i].Write(buf); err != nil {
				return nil, err
			}
		}
		for _, m := range masters {
			if _, err := ws[1+conns+m].Write(buf); err != nil {
				return nil, err
			}
			rs.clusterN[m]++
		}
		rs.n++
		rs.partN[part]++
	}
	for _, w := range ws {
		if err := w.Flush(); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

func (rs *replaySet) remove() {
	_ = os.Remove(rs.one)
	for _, p := range append(rs.parts, rs.clusterParts...) {
		_ = os.Remove(p)
	}
}

// replayMain is the replay child process (bench -replay FILE[,FILE…] -n N[,N…] -addr
// HOST:PORT): one connection per file, each written as fast as its socket takes it while
// another goroutine reads the replies. It exits once every reply is in and prints the
// elapsed time, from the first byte written to the last reply read.
func replayMain(files, addr, counts string) error {
	names := strings.Split(files, ",")
	ns := strings.Split(counts, ",")
	if len(names) != len(ns) {
		return fmt.Errorf("%d files but %d counts", len(names), len(ns))
	}
	type conn struct {
		f  *os.File
		nc net.Conn
		n  int64
	}
	var conns []conn
	defer func() {
		for _, c := range conns {
			_ = c.f.Close()
			_ = c.nc.Close()
		}
	}()
	for i, name := range names {
		n, err := strconv.ParseInt(ns[i], 10, 64)
		if err != nil {
			return err
		}
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			_ = f.Close()
			return err
		}
		conns = append(conns, conn{f, nc, n})
	}
	var total int64
	start := time.Now()
	errc := make(chan error, 2*len(conns))
	for _, c := range conns {
		total += c.n
		go func() { errc <- countReplies(c.nc, c.n) }()
		go func() {
			_, err := io.CopyBuffer(c.nc, onlyReader{c.f}, make([]byte, 1<<20))
			errc <- err
		}()
	}
	for range 2 * len(conns) {
		if err := <-errc; err != nil {
			return err
		}
	}
	fmt.Printf("%d %.6f\n", total, time.Since(start).Seconds())
	return nil
}

// onlyReader hides the file's WriteTo/ReadFrom so io.CopyBuffer uses the large buffer
// (sendfile would be faster than any real client could be).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// countReplies reads n replies; all must be +OK (RESTORE, FUNCTION LOAD).
func countReplies(r io.Reader, n int64) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for i := int64(0); i < n; i++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("reply %d of %d: %w", i+1, n, err)
		}
		if len(line) == 0 || line[0] == '-' {
			return fmt.Errorf("reply %d: %s", i+1, bytes.TrimSpace(line))
		}
		if line[0] == '$' {
			// FUNCTION LOAD answers with the library name.
			if _, err := br.ReadSlice('\n'); err != nil {
				return err
			}
		}
	}
	return nil
}
