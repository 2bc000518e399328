package task

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
)

func TestClientsNamed(t *testing.T) {
	list := "id=3 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=8 name=ferry-writer-t1 age=1 cmd=exec\n" +
		"id=4 addr=127.0.0.1:5001 fd=9 name= age=1 cmd=client|list\n" +
		"id=7 addr=127.0.0.1:5002 fd=10 name=ferry-writer-t10 age=1\n" +
		"id=9 addr=127.0.0.1:5003 fd=11 name=ferry-writer-t1 age=2\n" +
		"id=x name=ferry-writer-t1\n" + // malformed id: ignored
		"\n"
	if got := clientsNamed(list, "ferry-writer-t1"); !slices.Equal(got, []int64{3, 9}) {
		t.Fatalf("clientsNamed = %v; want [3 9]", got)
	}
	if got := clientsNamed("", "x"); got != nil {
		t.Fatalf("empty list: %v", got)
	}
	// By prefix, as the snapshot connections' fence selects; a nameless client never
	// matches, even a match that takes everything.
	got := listedClients(list+"id=12 name=ferry-writer-t1/snapshot-2\n", func(n string) bool { return strings.HasPrefix(n, "ferry-writer-t1") })
	want := []listedClient{{3, "ferry-writer-t1"}, {7, "ferry-writer-t10"}, {9, "ferry-writer-t1"}, {12, "ferry-writer-t1/snapshot-2"}}
	if !slices.Equal(got, want) {
		t.Fatalf("listedClients by prefix = %v; want %v", got, want)
	}
	if got := listedClients(list, func(string) bool { return true }); len(got) != 3 {
		t.Fatalf("listedClients of everything = %v; want the 3 named clients with an id", got)
	}
}

func TestCkptLog(t *testing.T) {
	var l ckptLog
	l.reset(100)
	if got := l.durable(50); got != 100 {
		t.Fatalf("floor: %d", got)
	}
	for _, off := range []int64{200, 300, 400} {
		l.add(off)
	}
	for _, c := range []struct{ applied, want int64 }{
		{150, 100}, {300, 300}, {350, 300}, {1000, 400}, {0, 400},
	} {
		if got := l.durable(c.applied); got != c.want {
			t.Fatalf("durable(%d) = %d; want %d", c.applied, got, c.want)
		}
	}
	if len(l.pending) != 0 {
		t.Fatalf("pending not drained: %v", l.pending)
	}
}

// TestRDBCopy: the reader follows the copier chunk by chunk, sees io.EOF only once the
// copy is complete and renamed, and sees the source's error when it fails (the partial
// file is then deleted).
func TestRDBCopy(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	t.Run("complete", func(t *testing.T) {
		pr, pw := io.Pipe()
		path := filepath.Join(dir, "a.rdb")
		c, err := startCopy(pr, path)
		if err != nil {
			t.Fatal(err)
		}
		h := copyHolder{c: c}
		r := c.reader(ctx)
		var got bytes.Buffer
		want := bytes.Repeat([]byte("0123456789"), 50000)
		go func() {
			for p := want; len(p) > 0; {
				n := min(len(p), 7777)
				pw.Write(p[:n])
				p = p[n:]
			}
			pw.Close()
		}()
		if _, err := io.Copy(&got, r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("read %d bytes, want %d identical", got.Len(), len(want))
		}
		h.close()
		if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("complete copy at %s: %d bytes, %v", path, len(b), err)
		}
		if _, err := os.Stat(path + ".part"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("partial file left: %v", err)
		}
		if p, ok := findSnapshot(dir, checkpoint.Full{ReplID: "x", Offset: 1}); ok {
			t.Fatalf("found a snapshot that is not there: %s", p)
		}
	})

	t.Run("source fails", func(t *testing.T) {
		pr, pw := io.Pipe()
		path := filepath.Join(dir, "b.rdb")
		c, err := startCopy(pr, path)
		if err != nil {
			t.Fatal(err)
		}
		h := copyHolder{c: c}
		boom := errors.New("link broke")
		go func() {
			pw.Write([]byte("partial"))
			pw.CloseWithError(boom)
		}()
		got, err := io.ReadAll(c.reader(ctx))
		if !errors.Is(err, boom) || string(got) != "partial" {
			t.Fatalf("read %q, %v; want the bytes, then the source's error", got, err)
		}
		h.close()
		for _, p := range []string{path, path + ".part"} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s left after a failed copy: %v", p, err)
			}
		}
	})

	t.Run("reader waits for a buffer's worth", func(t *testing.T) {
		pr, pw := io.Pipe()
		c, err := startCopy(pr, filepath.Join(dir, "d.rdb"))
		if err != nil {
			t.Fatal(err)
		}
		h := copyHolder{c: c}
		type result struct {
			n   int
			err error
		}
		r := c.reader(ctx)
		buf := make([]byte, 64<<10)
		read := func() chan result {
			ch := make(chan result, 1)
			go func() { n, err := r.Read(buf); ch <- result{n, err} }()
			return ch
		}
		got := read()
		pw.Write(make([]byte, 10)) // 10 bytes of a 64 KiB read: not worth a wake-up
		select {
		case res := <-got:
			t.Fatalf("read returned %d bytes, %v, with 10 of 64 KiB there; want it to wait", res.n, res.err)
		case <-time.After(100 * time.Millisecond):
		}
		pw.Write(make([]byte, 64<<10))
		if res := <-got; res.err != nil || res.n != len(buf) {
			t.Fatalf("read %d bytes, %v, with 64 KiB + 10 there; want a full buffer", res.n, res.err)
		}
		pw.Close() // the end of the copy hands out what is left, however short
		if res := <-read(); res.err != nil || res.n != 10 {
			t.Fatalf("read %d bytes, %v, after the copy ended; want the last 10", res.n, res.err)
		}
		if res := <-read(); res.err != io.EOF {
			t.Fatalf("read %d bytes, %v, at the end; want io.EOF", res.n, res.err)
		}
		h.close()
	})

	t.Run("reader cancelled", func(t *testing.T) {
		pr, pw := io.Pipe()
		c, err := startCopy(pr, filepath.Join(dir, "c.rdb"))
		if err != nil {
			t.Fatal(err)
		}
		h := copyHolder{c: c}
		rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := c.reader(rctx).Read(make([]byte, 10)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read waiting for data: %v; want the context's error", err)
		}
		pw.Close()
		h.close()
	})
}

func TestRemoveSnapshots(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"snapshot-a-1.rdb", "snapshot-b-2.rdb.part", "other.rdb"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	full := checkpoint.Full{ReplID: "a", Offset: 1}
	if p, ok := findSnapshot(dir, full); !ok || filepath.Base(p) != "snapshot-a-1.rdb" {
		t.Fatalf("findSnapshot = %s, %v", p, ok)
	}
	if err := removeSnapshots(dir); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "other.rdb" {
		t.Fatalf("left %v; want only other.rdb", left)
	}
}

func TestParseDeliveryAndFullResync(t *testing.T) {
	for s, ok := range map[string]bool{"exactly-once": true, "at-least-once": true, "": false, "once": false} {
		if _, err := ParseDelivery(s); (err == nil) != ok {
			t.Errorf("ParseDelivery(%q): %v", s, err)
		}
	}
	for s, want := range map[string]FullResync{"": FullResyncAuto, "auto": FullResyncAuto, "flush": FullResyncFlush, "fail": FullResyncFail} {
		if got, err := ParseFullResync(s); err != nil || got != want {
			t.Errorf("ParseFullResync(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseFullResync("delete"); err == nil {
		t.Error("ParseFullResync accepted delete")
	}
	if _, err := New(Config{DataDir: t.TempDir(), Delivery: "twice"}); err == nil {
		t.Error("New accepted delivery twice")
	}
}
