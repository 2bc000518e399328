package replica

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// TestSpoolSpillsInOrder writes 3 MiB in random pieces into a spool that holds 16 KiB in
// memory and 256 KiB per file, while a slower reader reads in random pieces: the bytes
// come out in order, files are rotated and deleted, and nothing is left at the end.
func TestSpoolSpillsInOrder(t *testing.T) {
	dir := t.TempDir()
	sp := newSpool(dir, 16<<10)
	sp.fileSize = 256 << 10
	defer sp.close()

	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	writeErr := make(chan error, 1)
	go func() {
		in := data
		wr := rand.New(rand.NewPCG(3, 4))
		for len(in) > 0 {
			n := min(1+wr.IntN(100<<10), len(in))
			if err := sp.write(in[:n]); err != nil {
				writeErr <- err
				return
			}
			in = in[n:]
		}
		sp.fail(io.ErrUnexpectedEOF) // the "link" ends after the data
		writeErr <- nil
	}()

	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	maxDisk := int64(0)
	for {
		n, err := sp.read(context.Background(), buf[:1+rng.IntN(len(buf))], false)
		got.Write(buf[:n])
		maxDisk = max(maxDisk, sp.stats().Disk)
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("read: %v", err)
			}
			break
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes, not the %d written (or out of order)", got.Len(), len(data))
	}
	st := sp.stats()
	t.Logf("spilled %d bytes in %d files, max on disk %d", st.Spilled, st.SpillFiles, maxDisk)
	if st.Spilled == 0 || st.SpillFiles < 2 {
		t.Fatalf("expected spilling into several files, got %+v", st)
	}
	if st.Buffered != 0 || st.Memory > 16<<10 {
		t.Fatalf("after reading everything: %+v", st)
	}
	if err := sp.close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("spool left %d entries in the data directory", len(entries))
	}
}

// TestSpoolMemoryBound: without a reader, memory stays within the limit and the rest is
// on disk.
func TestSpoolMemoryBound(t *testing.T) {
	sp := newSpool(t.TempDir(), 64<<10)
	defer sp.close()
	chunk := make([]byte, 10000)
	for range 100 {
		if err := sp.write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	st := sp.stats()
	if st.Memory > 64<<10 || st.Memory+st.Disk < 1_000_000 || st.Buffered != 1_000_000 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSpoolBoundary(t *testing.T) {
	sp := newSpool(t.TempDir(), 1<<20)
	defer sp.close()
	ctx := context.Background()
	sp.write([]byte("rdb-bytes"))
	buf := make([]byte, 100)
	// Before the boundary is known, everything buffered is RDB.
	n, err := sp.read(ctx, buf[:4], true)
	if err != nil || string(buf[:n]) != "rdb-" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	sp.write([]byte("!"))
	sp.setBoundaryAt(-1)
	sp.write([]byte("stream"))
	n, err = sp.read(ctx, buf, true)
	if err != nil || string(buf[:n]) != "bytes!" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if n, err := sp.read(ctx, buf, true); n != 0 || err != io.EOF {
		t.Fatalf("at the boundary: %d, %v; want io.EOF", n, err)
	}
	n, err = sp.read(ctx, buf, false)
	if err != nil || string(buf[:n]) != "stream" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

func TestSpoolWaitAndClose(t *testing.T) {
	sp := newSpool(t.TempDir(), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	buf := make([]byte, 10)
	if _, err := sp.read(ctx, buf, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with nothing buffered: %v, want the context's error", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sp.read(context.Background(), buf, false)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the reader block
	sp.close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close did not wake the reader")
	}
	if err := sp.write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}
