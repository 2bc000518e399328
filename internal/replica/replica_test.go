package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/crc"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

const testTimeout = 30 * time.Second

func testOptions(t *testing.T, src *testutil.Server) Options {
	return Options{
		Source:  redis.Options{Addr: src.Addr()},
		DataDir: t.TempDir(),
	}
}

func open(t *testing.T, opts Options, from Position) *Replica {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := Open(ctx, opts, from)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// readRDB reads the snapshot and checks what can be checked without decoding it: the
// magic of Redis 7.0 (RDB version 10) and the CRC64 that closes the file.
func readRDB(t *testing.T, r *Replica) []byte {
	t.Helper()
	rdb, err := io.ReadAll(r.RDB())
	if err != nil {
		t.Fatalf("read the RDB: %v", err)
	}
	if !bytes.HasPrefix(rdb, []byte("REDIS0010")) || len(rdb) < 18 {
		t.Fatalf("RDB does not start with REDIS0010: %q", rdb[:min(len(rdb), 20)])
	}
	body, sum := rdb[:len(rdb)-8], binary.LittleEndian.Uint64(rdb[len(rdb)-8:])
	if got := crc.CRC64(0, body); got != sum {
		t.Fatalf("RDB CRC64 %016x, the file says %016x", got, sum)
	}
	return rdb
}

func masterOffset(t *testing.T, src *testutil.Server) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	st, err := testutil.Replication(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	return st.MasterOffset
}

// ackedOffset is what the source believes Ferry has applied: the offset of its replica
// line in INFO replication.
func ackedOffset(t *testing.T, src *testutil.Server) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	st, err := testutil.Replication(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Replicas) != 1 {
		t.Fatalf("source has %d replicas, want 1 (Ferry)", len(st.Replicas))
	}
	return st.Replicas[0].Offset
}

// savedCommand is a Command with its arguments copied.
type savedCommand struct {
	Command
	args []string
}

// readUntil reads commands until one ends at offset; it fails on overshooting.
func readUntil(t *testing.T, r *Replica, offset int64) []savedCommand {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out []savedCommand
	for {
		c, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next (want offset %d, got %d commands): %v", offset, len(out), err)
		}
		s := savedCommand{Command: *c}
		for _, a := range c.Args {
			s.args = append(s.args, string(a))
		}
		s.Args = nil
		out = append(out, s)
		if c.Offset == offset {
			return out
		}
		if c.Offset > offset {
			t.Fatalf("command %v ends at %d, past the expected end %d", s.args, c.Offset, offset)
		}
	}
}

func dataCommands(cmds []savedCommand) []savedCommand {
	var out []savedCommand
	for _, c := range cmds {
		if c.Class == ClassData {
			out = append(out, c)
		}
	}
	return out
}

func TestFullSync(t *testing.T) {
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"disk", []string{"--repl-diskless-sync", "no"}},
		{"diskless", []string{"--repl-diskless-sync", "yes"}},
		// The source waits a second for more replicas before it answers PSYNC, and
		// sends newlines meanwhile.
		{"diskless-delayed", []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "1"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			src := testutil.StartServer(t, mode.args...)
			src.Do(t, "SET", "a", "1")
			src.Do(t, "RPUSH", "list", "x", "y", "z")
			db1 := src.Conn(t)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if _, err := db1.Do(ctx, "SELECT", 1); err != nil {
				t.Fatal(err)
			}
			if _, err := db1.Do(ctx, "HSET", "h", "f", "v"); err != nil {
				t.Fatal(err)
			}

			opts := testOptions(t, src)
			opts.ListeningPort = 16379
			r := open(t, opts, Position{})
			if !r.FullSync() || r.Start().ReplID == "" || r.Start().DB != 0 {
				t.Fatalf("FullSync %v Start %v", r.FullSync(), r.Start())
			}
			rdb := readRDB(t, r)
			if mode.name == "diskless-delayed" && r.fr.keepalives == 0 {
				t.Fatal("no newline keepalives seen before the delayed answer")
			}
			if r.RDBSize() != int64(len(rdb)) || r.RDBReceived() != int64(len(rdb)) {
				t.Fatalf("RDBSize %d RDBReceived %d, read %d", r.RDBSize(), r.RDBReceived(), len(rdb))
			}
			loadRDB(t, rdb, map[int]int{0: 2, 1: 1})

			// The source lists Ferry with the announced port, and its ACK is 0: nothing
			// is applied yet.
			waitFor(t, func() bool {
				st, err := testutil.Replication(ctx, src)
				return err == nil && len(st.Replicas) == 1 && st.Replicas[0].Port == 16379 && st.Replicas[0].State == "online"
			}, "Ferry online in INFO replication")
			if got := ackedOffset(t, src); got != 0 {
				t.Fatalf("acked %d before SetApplied, want 0", got)
			}
			r.SetApplied(r.Start().Offset)

			for i := range 50 {
				src.Do(t, "INCR", "n")
				if _, err := db1.Do(ctx, "SET", "k"+strconv.Itoa(i), i); err != nil {
					t.Fatal(err)
				}
			}
			src.Do(t, "EXPIRE", "a", 100) // replicated as PEXPIREAT
			end := masterOffset(t, src)
			cmds := readUntil(t, r, end)
			data := dataCommands(cmds)
			if len(data) != 101 {
				t.Fatalf("got %d data commands, want 101", len(data))
			}
			for i, c := range data[:100] {
				wantName, wantDB := "incr", 0
				if i%2 == 1 {
					wantName, wantDB = "set", 1
				}
				if c.Name != wantName || c.DB != wantDB {
					t.Fatalf("data command %d = %s db %d, want %s db %d", i, c.Name, c.DB, wantName, wantDB)
				}
			}
			if last := data[100]; last.Name != "pexpireat" || last.DB != 0 {
				t.Fatalf("last = %s db %d", last.Name, last.DB)
			}
			if r.Received() != end {
				t.Fatalf("Received %d, master_repl_offset %d", r.Received(), end)
			}
		})
	}
}

// loadRDB starts a redis-server on the RDB Ferry received and checks its key counts.
func loadRDB(t *testing.T, rdb []byte, keys map[int]int) {
	t.Helper()
	s := testutil.StartServer(t)
	s.Stop()
	if err := os.WriteFile(filepath.Join(s.Dir(), "dump.rdb"), rdb, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	for db, want := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		c, err := s.Dial(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		_, err = c.Do(ctx, "SELECT", db)
		v, err2 := c.Do(ctx, "DBSIZE")
		c.Close()
		cancel()
		if err != nil || err2 != nil || v.Int != int64(want) {
			t.Fatalf("db %d of the loaded RDB: %d keys (%v %v), want %d", db, v.Int, err, err2, want)
		}
	}
}

// TestAckIsApplied: the source sees exactly what SetApplied said, never what was only
// received, and an unprompted ACK carries it within AckInterval.
func TestAckIsApplied(t *testing.T) {
	src := testutil.StartServer(t)
	opts := testOptions(t, src)
	opts.AckInterval = 200 * time.Millisecond
	r := open(t, opts, Position{})
	readRDB(t, r)
	r.SetApplied(r.Start().Offset)
	for i := range 10 {
		src.Do(t, "SET", "k", i)
	}
	cmds := readUntil(t, r, masterOffset(t, src))
	x := dataCommands(cmds)[4].Offset
	if x >= r.Received() {
		t.Fatalf("test needs x (%d) below Received (%d)", x, r.Received())
	}
	r.SetApplied(x)
	waitFor(t, func() bool { return ackedOffset(t, src) == x }, fmt.Sprintf("source to see ACK %d", x))
	// Over several more ACK periods it stays there, although more was received.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if got := ackedOffset(t, src); got != x {
			t.Fatalf("source sees ACK %d, SetApplied said %d", got, x)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWaitCountsApplied: WAIT on the source counts Ferry only once SetApplied covers the
// write, and the GETACK that WAIT sends is answered as soon as it does (the ticker is
// too slow to explain the answer).
func TestWaitCountsApplied(t *testing.T) {
	src := testutil.StartServer(t)
	opts := testOptions(t, src)
	opts.AckInterval = time.Minute
	r := open(t, opts, Position{})
	readRDB(t, r)

	client := src.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := client.Do(ctx, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	// Nobody applies anything yet: WAIT times out without Ferry.
	if v, err := client.Do(ctx, "WAIT", 1, 300); err != nil || v.Int != 0 {
		t.Fatalf("WAIT before anything was applied = %d, %v; want 0", v.Int, err)
	}

	const applyDelay = 400 * time.Millisecond
	applier := make(chan error, 1)
	actx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		<-applier
	}()
	go func() {
		for {
			c, err := r.Next(actx)
			if err != nil {
				applier <- err
				return
			}
			if c.Class == ClassData {
				time.Sleep(applyDelay) // a slow destination
			}
			r.SetApplied(c.Offset)
		}
	}()
	r.SetApplied(r.Start().Offset) // the snapshot is "applied"
	start := time.Now()
	v, err := client.Do(ctx, "WAIT", 1, 5000)
	took := time.Since(start)
	if err != nil || v.Int != 1 {
		t.Fatalf("WAIT = %d, %v; want 1", v.Int, err)
	}
	if took < applyDelay/2 || took > 3*time.Second {
		t.Fatalf("WAIT took %s: want about the apply delay %s", took, applyDelay)
	}
}

// TestPartialResync: reopening from a Position continues the stream exactly after it,
// in the DB it was in, although the source does not send SELECT again.
func TestPartialResync(t *testing.T) {
	src := testutil.StartServer(t)
	opts := testOptions(t, src)
	r := open(t, opts, Position{})
	readRDB(t, r)
	r.SetApplied(r.Start().Offset)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	db3 := src.Conn(t)
	if _, err := db3.Do(ctx, "SELECT", 3); err != nil {
		t.Fatal(err)
	}
	incr := func(from, to int) {
		for i := from; i <= to; i++ {
			if _, err := db3.Do(ctx, "INCRBY", "counter", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	incr(1, 50)
	cmds := readUntil(t, r, masterOffset(t, src))
	data := dataCommands(cmds)
	var seen []string
	for _, c := range data[:20] {
		seen = append(seen, c.args[2])
	}
	pos := Position{ReplID: r.Start().ReplID, Offset: data[19].Offset, DB: data[19].DB}
	if pos.DB != 3 {
		t.Fatalf("position %v: want DB 3", pos)
	}
	r.Close()

	incr(51, 100)
	r2 := open(t, opts, pos)
	if r2.FullSync() {
		t.Fatal("reopening from a position in the backlog gave a full sync")
	}
	if r2.Start() != pos {
		t.Fatalf("Start %v, want %v", r2.Start(), pos)
	}
	if n, err := r2.RDB().Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("RDB after +CONTINUE: %d %v", n, err)
	}
	for _, c := range dataCommands(readUntil(t, r2, masterOffset(t, src))) {
		if c.DB != 3 || c.Name != "incrby" {
			t.Fatalf("continued command %v in db %d", c.args, c.DB)
		}
		seen = append(seen, c.args[2])
	}
	if len(seen) != 100 {
		t.Fatalf("saw %d INCRBYs across the reconnect, want 100", len(seen))
	}
	for i, s := range seen {
		if s != strconv.Itoa(i+1) {
			t.Fatalf("INCRBY #%d has %s: gap or duplicate at the reconnect", i+1, s)
		}
	}
	st, err := src.Info(ctx, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if st["sync_partial_ok"] != "1" || st["sync_full"] != "1" {
		t.Fatalf("sync_partial_ok %s sync_full %s, want 1 and 1", st["sync_partial_ok"], st["sync_full"])
	}

	// A replication ID the source does not know gets a full sync.
	r2.Close()
	r3 := open(t, opts, Position{ReplID: strings.Repeat("ab", 20), Offset: pos.Offset, DB: 3})
	if !r3.FullSync() || r3.Start().ReplID != pos.ReplID {
		t.Fatalf("unknown replid: FullSync %v Start %v", r3.FullSync(), r3.Start())
	}
}

// TestSlowConsumer: 50 MB written while nobody reads the stream, through a source whose
// replica output buffer is limited to 8 MB, with 1 MiB of spool memory. The spool takes
// it to disk; the source never drops Ferry; then every command is read.
func TestSlowConsumer(t *testing.T) {
	src := testutil.StartServer(t, "--client-output-buffer-limit", "replica 8mb 2mb 10")
	opts := testOptions(t, src)
	opts.SpoolMemory = 1 << 20
	r := open(t, opts, Position{})
	readRDB(t, r)
	r.SetApplied(r.Start().Offset)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c := src.Conn(t)
	value := bytes.Repeat([]byte("v"), 100<<10)
	const n, batch = 500, 50
	// Batches of 5 MB, each waited for on the socket side only: the point is that
	// nobody calls Next, not how fast the test binary (maybe built with -race) reads.
	var end int64
	for i := 0; i < n; i += batch {
		for j := i; j < i+batch; j++ {
			if err := c.Send("SET", "big"+strconv.Itoa(j), value); err != nil {
				t.Fatal(err)
			}
		}
		for range batch {
			if _, err := c.Receive(); err != nil {
				t.Fatal(err)
			}
		}
		end = masterOffset(t, src)
		waitFor(t, func() bool { return r.Received() == end }, "the batch received")
	}
	st := r.Stats()
	if st.Spilled < 40<<20 || st.Memory > 1<<20 {
		t.Fatalf("spool %+v: want most of 50 MB spilled, memory within 1 MiB", st)
	}
	time.Sleep(500 * time.Millisecond) // give the source a chance to drop us, if it would
	info, err := src.Info(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if info["connected_slaves"] != "1" || info["sync_full"] != "1" || info["client_recent_max_output_buffer"] == "" {
		t.Fatalf("source dropped Ferry: connected_slaves %s sync_full %s", info["connected_slaves"], info["sync_full"])
	}
	sets := 0
	start := time.Now()
	for _, c := range readUntil(t, r, end) {
		if c.Name == "set" {
			sets++
		}
	}
	t.Logf("parsed %d MB of stream in %s", (end-r.Start().Offset)>>20, time.Since(start))
	if sets != n {
		t.Fatalf("read %d SETs, want %d", sets, n)
	}
	if st := r.Stats(); st.Buffered != 0 || st.Disk != 0 {
		t.Fatalf("after reading everything: %+v", st)
	}
	if entries, err := os.ReadDir(r.Stats().SpoolDir); err != nil || len(entries) != 0 {
		t.Fatalf("spool directory holds %d files (%v)", len(entries), err)
	}
}

func TestHandshakeErrors(t *testing.T) {
	src := testutil.StartServer(t)
	// Set after start (the harness waits for an unauthenticated PING); the harness's
	// connection stays logged in.
	src.Do(t, "CONFIG", "SET", "requirepass", "s3cret-pass")
	src.Do(t, "ACL", "SETUSER", "nopsync", "on", ">p", "~*", "+@all", "-psync")
	src.Do(t, "ACL", "SETUSER", "noreplconf", "on", ">p", "~*", "+@all", "-replconf")
	src.Do(t, "ACL", "SETUSER", "nocommand", "on", ">p", "~*", "+@all", "-command")

	cases := []struct {
		name       string
		user, pass string
		want       string
	}{
		{"no password", "", "", "requires a password"},
		{"wrong password", "", "wrong-pass", "check the password"},
		{"no psync", "nopsync", "p", `the user "nopsync" may not run PSYNC`},
		{"no replconf", "noreplconf", "p", "ACL SETUSER noreplconf +psync +replconf +ping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t, src)
			opts.Source.Username, opts.Source.Password = tc.user, redis.Secret(tc.pass)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			r, err := Open(ctx, opts, Position{})
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if tc.pass != "" && strings.Contains(err.Error(), tc.pass+"\"") || strings.Contains(err.Error(), "wrong-pass") {
				t.Fatalf("error shows the password: %q", err)
			}
		})
	}

	// Without COMMAND the built-in table still classifies the stream.
	opts := testOptions(t, src)
	opts.Source.Username, opts.Source.Password = "nocommand", "p"
	r := open(t, opts, Position{})
	readRDB(t, r)
	src.Do(t, "SET", "x", "1")
	cmds := readUntil(t, r, masterOffset(t, src))
	if d := dataCommands(cmds); len(d) != 1 || d[0].Name != "set" {
		t.Fatalf("stream through the built-in table: %+v", cmds)
	}
}

func TestUnreachableSource(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	_, err = Open(ctx, Options{Source: redis.Options{Addr: addr}, DataDir: t.TempDir()}, Position{})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open on a closed port: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %s to fail", time.Since(start))
	}
}

// TestNotReady: a source that is itself a replica without a link to its master answers
// -NOMASTERLINK, which is a retryable *NotReadyError.
func TestNotReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	src := testutil.StartServer(t, "--replicaof", "127.0.0.1", port)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err = Open(ctx, testOptions(t, src), Position{})
	var nr *NotReadyError
	if !errors.Is(err, ErrNotReady) || !errors.As(err, &nr) || !strings.Contains(err.Error(), "NOMASTERLINK") {
		t.Fatalf("Open on a replica without its master: %v", err)
	}
}

// TestLinkKilled: when the source drops Ferry, Next says so after the last complete
// command, with the offset.
func TestLinkKilled(t *testing.T) {
	src := testutil.StartServer(t)
	r := open(t, testOptions(t, src), Position{})
	readRDB(t, r)
	src.Do(t, "SET", "a", "1")
	end := masterOffset(t, src)
	readUntil(t, r, end)
	src.Do(t, "CLIENT", "KILL", "TYPE", "replica")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := r.Next(ctx)
	var le *LinkError
	if !errors.As(err, &le) || le.Offset != end || !strings.Contains(err.Error(), fmt.Sprintf("closed the replication link at offset %d", end)) {
		t.Fatalf("after CLIENT KILL: %v", err)
	}
}

// TestCloseWhileReading: Close interrupts a reader blocked in RDB and in Next.
func TestCloseWhileReading(t *testing.T) {
	src := testutil.StartServer(t)
	r := open(t, testOptions(t, src), Position{})
	readRDB(t, r)
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() {
		defer wg.Done()
		_, err = r.Next(context.Background())
	}()
	time.Sleep(50 * time.Millisecond)
	r.Close()
	wg.Wait()
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Next during Close: %v", err)
	}
}
