package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/resp"
)

// buildReplay writes, for every key of the RDB at rdbPath, the RESTORE command Ferry
// would send for it (the same raw payload bytes, TTL and flags) to out, encoded as RESP,
// whatever its size: the ideal client replays them without any per-key work. Function
// libraries, if any, go first as FUNCTION LOAD. It returns the number of commands.
func buildReplay(rdbPath, out string, target rdb.Target) (int64, error) {
	in, err := os.Open(rdbPath)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return 0, err
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	dec := rdb.NewDecoder(bufio.NewReaderSize(in, 1<<20), rdb.Options{Size: st.Size()})
	var p rdb.Payload
	var buf []byte
	var n int64
	for {
		e, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("decode %s: %w", rdbPath, err)
		}
		var args [][]byte
		switch e.Record {
		case rdb.RecordFunction:
			args = rdb.FunctionLoadArgs(e.Value)
		case rdb.RecordKey:
			version, err := rdb.PayloadVersion(dec.Header().Flavor, e.Type, target)
			if err != nil {
				return n, fmt.Errorf("key %q: %w", e.Key, err)
			}
			raw, ok, err := dec.Raw(1 << 30)
			if err != nil || !ok {
				return n, fmt.Errorf("key %q: raw value: %v", e.Key, err)
			}
			args = p.RestoreArgs(e.Key, p.Build(e.Type, raw, version), e.ExpireAt, e.Idle, e.Freq)
		default:
			continue
		}
		buf = resp.AppendCommand(buf[:0], args...)
		if _, err := w.Write(buf); err != nil {
			return n, err
		}
		n++
	}
	return n, w.Flush()
}

// replayMain is the replay child process (bench -replay FILE -addr HOST:PORT): it writes
// the file to the server as fast as the socket takes it while a second goroutine reads
// the replies, and exits once all n replies are in. It prints the elapsed time, measured
// from the first byte written to the last reply read.
func replayMain(file, addr string, n int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 20)
		_ = tc.SetReadBuffer(1 << 20)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- countReplies(nc, n) }()
	if _, err := io.CopyBuffer(nc, onlyReader{f}, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("write to %s: %w", addr, err)
	}
	if err := <-done; err != nil {
		return err
	}
	fmt.Printf("%d %.6f\n", n, time.Since(start).Seconds())
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
