package replica

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ferrysync/ferry/internal/resp"
)

// lockedBuffer collects the ACKs a replica writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// craftedReplica runs a Replica over a crafted byte stream instead of a socket.
func craftedReplica(t *testing.T, src io.Reader, from Position, ackInterval time.Duration) (*Replica, *lockedBuffer) {
	t.Helper()
	opts, err := Options{DataDir: t.TempDir(), SpoolMemory: 8 << 10, AckInterval: ackInterval}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	acks := &lockedBuffer{}
	l := link{addr: "crafted", src: src, w: acks}
	if c, ok := src.(io.Closer); ok {
		l.interrupt = func() { c.Close() } // Close interrupts a blocked read, as closing a socket does
	}
	r := newReplica(opts, from, newCommandTable(), l)
	if err := r.begin(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, acks
}

func cmd(args ...string) []byte { return resp.AppendCommandStrings(nil, args...) }

func ackFor(offset int64) string {
	return string(cmd("REPLCONF", "ACK", strconv.FormatInt(offset, 10)))
}

// TestCraftedStreamOneByte sends a diskless full sync one byte per read through the whole
// replica (framer, spool spilling to disk, parser) and checks the RDB, every command's
// class, DB and offset, the GETACK answer, and the stop at an unknown command.
func TestCraftedStreamOneByte(t *testing.T) {
	rdb := bytes.Repeat([]byte("REDIS0010-payload-"+testMark[:30]), 1000) // 48 KB: spills
	cmds := [][]byte{
		cmd("SELECT", "3"),
		cmd("set", "k", "v"),
		cmd("PING"),
		cmd("MULTI"),
		cmd("INCR", "n"),
		cmd("EXEC"),
		cmd("REPLCONF", "GETACK", "*"),
		cmd("PUBLISH", "ch", "m"),
		cmd("FLUSHALL"),
		cmd("FOO.BAR", "x"),
	}
	stream := bytes.Join(cmds, nil)
	in := fullStream(true, rdb, stream, 3)
	r, acks := craftedReplica(t, iotest.OneByteReader(bytes.NewReader(in)), Position{}, time.Hour)

	if !r.FullSync() || r.Start() != (Position{ReplID: testReplID, Offset: 1234}) {
		t.Fatalf("FullSync %v Start %v", r.FullSync(), r.Start())
	}
	if _, err := r.Next(context.Background()); err == nil || !strings.Contains(err.Error(), "before the RDB") {
		t.Fatalf("Next before the RDB: %v", err)
	}
	// Read exactly the RDB's bytes, as a decoder that stops after the checksum does,
	// without asking for io.EOF.
	got := make([]byte, len(rdb))
	if _, err := io.ReadFull(iotest.OneByteReader(r.RDB()), got); err != nil || !bytes.Equal(got, rdb) {
		t.Fatalf("RDB: %v", err)
	}
	if r.RDBSize() != int64(len(rdb)) {
		t.Fatalf("RDBSize %d, want %d", r.RDBSize(), len(rdb))
	}

	want := []struct {
		name  string
		class Class
		db    int
	}{
		{"select", ClassControl, 3},
		{"set", ClassData, 3},
		{"ping", ClassControl, 3},
		{"multi", ClassMulti, 3},
		{"incr", ClassData, 3},
		{"exec", ClassExec, 3},
		{"replconf", ClassControl, 3},
		{"publish", ClassPublish, 3},
		{"flushall", ClassData, 3},
	}
	offset := int64(1234)
	for i, w := range want {
		c, err := r.Next(context.Background())
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		offset += int64(len(cmds[i]))
		if c.Name != w.name || c.Class != w.class || c.DB != w.db || c.Offset != offset {
			t.Fatalf("command %d = %s %v db %d offset %d; want %s %v db %d offset %d",
				i, c.Name, c.Class, c.DB, c.Offset, w.name, w.class, w.db, offset)
		}
		if w.name == "replconf" {
			// GETACK is answered with what was applied: nothing yet in a full sync.
			waitFor(t, func() bool { return strings.Contains(acks.String(), ackFor(0)) }, "ACK 0")
			before := offset - int64(len(cmds[i]))
			r.SetApplied(before) // the GETACK waits for this much; it is acked at once
			waitFor(t, func() bool { return strings.Contains(acks.String(), ackFor(before)) }, "ACK after SetApplied")
		}
	}
	_, err := r.Next(context.Background())
	var ue *UnknownCommandError
	if !errors.As(err, &ue) || ue.Name != "FOO.BAR" || !strings.Contains(err.Error(), `unknown command "FOO.BAR"`) {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err2 := r.Next(context.Background()); err2 != err {
		t.Fatalf("Next after a final error: %v", err2)
	}
	if r.Received() != 1234+int64(len(stream)) {
		t.Fatalf("Received %d, want %d", r.Received(), 1234+len(stream))
	}
}

// TestCraftedContinueAndLinkEnd: +CONTINUE with a new ID keeps the offset and DB of the
// position; the end of the input surfaces as a LinkError after the last whole command.
func TestCraftedContinueAndLinkEnd(t *testing.T) {
	const newID = "1111111111111111111111111111111111111111"
	set := cmd("SET", "a", "1")
	in := []byte("\n+CONTINUE " + newID + "\r\n" + string(set) + "*2\r\n$3\r\nDEL\r\n$1")
	from := Position{ReplID: testReplID, Offset: 500, DB: 7}
	r, acks := craftedReplica(t, bytes.NewReader(in), from, time.Hour)
	if r.FullSync() || r.Start() != (Position{ReplID: newID, Offset: 500, DB: 7}) {
		t.Fatalf("FullSync %v Start %v", r.FullSync(), r.Start())
	}
	if n, err := r.RDB().Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("RDB after +CONTINUE: %d, %v", n, err)
	}
	if b := r.Stats().RDBBoundary; b != 0 {
		t.Fatalf("RDB boundary %d after +CONTINUE, want 0", b)
	}
	// The applied position is acked at once after +CONTINUE.
	waitFor(t, func() bool { return acks.String() == ackFor(500) }, "ACK 500")
	c, err := r.Next(context.Background())
	if err != nil || c.Name != "set" || c.DB != 7 || c.Offset != 500+int64(len(set)) {
		t.Fatalf("Next = %+v, %v", c, err)
	}
	_, err = r.Next(context.Background())
	var le *LinkError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "closed the replication link at offset") {
		t.Fatalf("end of input: %v", err)
	}
	r.SetApplied(1 << 40) // capped to what was received
	if r.Applied() != r.Received() {
		t.Fatalf("Applied %d beyond Received %d", r.Applied(), r.Received())
	}
}

func TestNextContextCancel(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("+CONTINUE\r\n"))
	r, _ := craftedReplica(t, pr, Position{ReplID: testReplID, Offset: 9}, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := r.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with nothing to read: %v", err)
	}
	// Not final: the next call gets the command.
	go pw.Write(cmd("DEL", "x"))
	c, err := r.Next(context.Background())
	if err != nil || c.Name != "del" || c.Offset != 9+int64(len(cmd("DEL", "x"))) {
		t.Fatalf("Next after a cancel: %+v, %v", c, err)
	}
	r.Close()
	if _, err := r.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAnswerErrors(t *testing.T) {
	cases := []struct {
		answer   string
		notReady bool
		want     string
	}{
		{"-LOADING Redis is loading the dataset in memory\r\n", true, "cannot serve a replica yet (LOADING"},
		{"\n-NOMASTERLINK Can't SYNC while not connected with my master\r\n", true, "retry later"},
		{"-ERR Can't SYNC while not connected with my master\r\n", true, "retry later"},
		{"-BUSY Redis is busy running a script\r\n", true, "retry later"},
		{"-NOPERM this user has no permissions to run the 'psync' command\r\n", false, "ACL SETUSER default +psync +replconf +ping"},
		{"-ERR unknown command 'PSYNC'\r\n", false, "does not know PSYNC"},
		{"-ERR something else\r\n", false, "refused PSYNC: ERR something else"},
		{"+OK\r\n", false, "unexpected answer to PSYNC"},
		{"", false, "closed the connection instead of answering PSYNC"},
	}
	for _, tc := range cases {
		opts, _ := Options{DataDir: t.TempDir()}.withDefaults()
		r := newReplica(opts, Position{}, newCommandTable(), link{addr: "crafted", src: strings.NewReader(tc.answer), w: io.Discard})
		err := r.begin(context.Background())
		r.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrNotReady) != tc.notReady {
			t.Errorf("answer %q: %v; want %q (not ready: %v)", tc.answer, err, tc.want, tc.notReady)
		}
	}
}
