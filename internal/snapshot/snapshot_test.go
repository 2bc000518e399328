package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/writer"
)

// makeWorkloadRDB is a snapshot of every value type and encoding (the testutil workload
// with large collections and TTLs) in three databases, with a function library: what a
// real source sends. The source stays up for comparisons.
func makeWorkloadRDB(t *testing.T) (src *testutil.Server, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src = testutil.StartServer(t)
	src.Do(t, "FUNCTION", "LOAD", "#!lua name=snaptest\nredis.register_function('snaptest_one', function() return 1 end)")
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 11, DBs: []int{0, 1, 5}, TTL: true, Large: true, Keys: 3000})
	if err := w.Fill(ctx, src, 15000); err != nil {
		t.Fatal(err)
	}
	src.Do(t, "SAVE")
	data, err := os.ReadFile(filepath.Join(src.Dir(), "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	return src, data
}

// TestLoadConnections loads the same snapshot over one and over four connections, with
// and without the command path for big keys, and checks the destination against the
// source: DEBUG DIGEST of every database and the function libraries.
func TestLoadConnections(t *testing.T) {
	src, data := makeWorkloadRDB(t)
	want := digests(t, src)
	wantFuncs := functions(t, src)
	for _, tc := range []struct {
		name      string
		conns     int
		threshold int64
		force     bool // every value as commands: all through Writer
	}{
		{"one connection", 1, 0, false},
		{"four connections", 4, 0, false},
		{"four connections, big keys as commands", 4, 1024, false},
		{"four connections, every value as commands", 4, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dst := testutil.StartServer(t)
			opts := redis.Options{Addr: dst.Addr()}
			target, err := DestinationTarget(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			main, err := writer.Open(ctx, writer.Options{Target: opts})
			if err != nil {
				t.Fatal(err)
			}
			defer main.Close()
			var mu sync.Mutex
			opened := []*writer.Writer{main}
			l := &Loader{Writer: main, Target: target, BigKeyThreshold: tc.threshold, Connections: tc.conns, ForceCommands: tc.force,
				Open: func(ctx context.Context) (*writer.Writer, error) {
					w, err := writer.Open(ctx, writer.Options{Target: opts})
					if err == nil {
						mu.Lock()
						opened = append(opened, w)
						mu.Unlock()
					}
					return w, err
				}}
			if err := l.Load(ctx, rdb.NewDecoder(bytes.NewReader(data), rdb.Options{Size: int64(len(data))})); err != nil {
				t.Fatal(err)
			}
			if got := digests(t, dst); !equalMaps(got, want) {
				t.Fatalf("digests differ:\nsource      %v\ndestination %v", want, got)
			}
			if got := functions(t, dst); !slices.Equal(got, wantFuncs) {
				t.Fatalf("functions: got %q, want %q", got, wantFuncs)
			}
			if len(opened) != tc.conns {
				t.Fatalf("%d connections opened, want %d", len(opened), tc.conns)
			}
			var keys int64
			for i, w := range opened {
				st := w.Stats()
				switch {
				case tc.force && i > 0 && st.Commands != 0:
					t.Errorf("connection %d carried %d commands: values written as commands must all go through Writer", i, st.Commands)
				case !tc.force && st.Commands == 0:
					t.Errorf("connection %d carried no command: keys are not spread", i)
				}
				keys += st.Commands
				if i > 0 && !errors.Is(w.Err(), writer.ErrClosed) {
					t.Errorf("connection %d not closed by Load: %v", i, w.Err())
				}
			}
			if main.Err() != nil {
				t.Errorf("Load closed or broke the caller's writer: %v", main.Err())
			}
			if n := l.Progress.Functions.Load(); n != int64(len(wantFuncs)) || n == 0 {
				t.Errorf("function libraries loaded: %d, source has %d", n, len(wantFuncs))
			}
			if tc.threshold > 0 && l.Progress.BigKeys.Load() == 0 {
				t.Error("no key went through the command path")
			}
			if tc.threshold == 0 && !tc.force && l.Progress.BigKeys.Load() != 0 {
				t.Errorf("%d keys went through the command path", l.Progress.BigKeys.Load())
			}
			if n := int64(dbsize(t, src)); l.Progress.Keys.Load() != n {
				t.Errorf("Progress.Keys = %d, source has %d keys", l.Progress.Keys.Load(), n)
			}
		})
	}
}

// TestLoadOpenFails: when a connection cannot be opened, Load fails before writing and
// closes the ones it opened (goleak checks their goroutines are gone).
func TestLoadOpenFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := testutil.StartServer(t)
	opts := redis.Options{Addr: dst.Addr()}
	main, err := writer.Open(ctx, writer.Options{Target: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	calls := 0
	boom := errors.New("no more connections")
	l := &Loader{Writer: main, Connections: 4, Open: func(ctx context.Context) (*writer.Writer, error) {
		if calls++; calls == 3 {
			return nil, boom
		}
		return writer.Open(ctx, writer.Options{Target: opts})
	}}
	data := rdbWith(t, func(s *testutil.Server) { s.Do(t, "SET", "k", "v") })
	err = l.Load(ctx, rdb.NewDecoder(bytes.NewReader(data), rdb.Options{}))
	if !errors.Is(err, boom) {
		t.Fatalf("Load: %v, want %v", err, boom)
	}
	if n := dbsize(t, dst); n != 0 {
		t.Fatalf("destination has %d keys after a failed start", n)
	}
	if main.Err() != nil {
		t.Fatalf("the caller's writer: %v", main.Err())
	}
}

// TestLoadConnectionsNeedOpen: more than one connection without Open is a usage error.
func TestLoadConnectionsNeedOpen(t *testing.T) {
	l := &Loader{Connections: 2}
	err := l.Load(context.Background(), rdb.NewDecoder(bytes.NewReader(nil), rdb.Options{}))
	if err == nil {
		t.Fatal("Load with 2 connections and no Open succeeded")
	}
}

// TestLoadShardFails: an error on any connection fails Load with the key that failed.
func TestLoadShardFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := testutil.StartServer(t)
	// RESTORE … REPLACE takes any key; a destination out of memory refuses them all.
	dst.Do(t, "CONFIG", "SET", "maxmemory", "1")
	dst.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	opts := redis.Options{Addr: dst.Addr()}
	main, err := writer.Open(ctx, writer.Options{Target: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	data := rdbWith(t, func(s *testutil.Server) {
		for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			s.Do(t, "SET", k, "value")
		}
	})
	l := &Loader{Writer: main, Connections: 4, Open: func(ctx context.Context) (*writer.Writer, error) {
		return writer.Open(ctx, writer.Options{Target: opts})
	}}
	err = l.Load(ctx, rdb.NewDecoder(bytes.NewReader(data), rdb.Options{}))
	var ae *writer.ApplyError
	if !errors.As(err, &ae) || ae.Reason != writer.ReasonOOM {
		t.Fatalf("Load: %v, want an OOM apply error", err)
	}
}

func rdbWith(t *testing.T, fill func(s *testutil.Server)) []byte {
	t.Helper()
	s := testutil.StartServer(t)
	fill(s)
	s.Do(t, "SAVE")
	data, err := os.ReadFile(filepath.Join(s.Dir(), "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// digests is DEBUG DIGEST of every database that has keys.
func digests(t *testing.T, s *testutil.Server) map[int]string {
	t.Helper()
	out := map[int]string{}
	c := s.Conn(t)
	for _, db := range s.DBs() {
		if _, err := c.Do(context.Background(), "SELECT", db); err != nil {
			t.Fatal(err)
		}
		v, err := c.Do(context.Background(), "DEBUG", "DIGEST")
		if err != nil {
			t.Fatal(err)
		}
		out[db] = string(v.Str)
	}
	return out
}

func dbsize(t *testing.T, s *testutil.Server) int {
	t.Helper()
	n := 0
	c := s.Conn(t)
	for _, db := range s.DBs() {
		if _, err := c.Do(context.Background(), "SELECT", db); err != nil {
			t.Fatal(err)
		}
		v, err := c.Do(context.Background(), "DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		n += int(v.Int)
	}
	return n
}

// functions lists "name:code" of every library, sorted.
func functions(t *testing.T, s *testutil.Server) []string {
	t.Helper()
	v := s.Do(t, "FUNCTION", "LIST", "WITHCODE")
	var out []string
	for _, lib := range v.Elems {
		var name, code string
		for i := 0; i+1 < len(lib.Elems); i += 2 {
			switch string(lib.Elems[i].Str) {
			case "library_name":
				name = string(lib.Elems[i+1].Str)
			case "library_code":
				code = string(lib.Elems[i+1].Str)
			}
		}
		out = append(out, name+":"+code)
	}
	slices.Sort(out)
	return out
}

func equalMaps(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestLoadFlushCounts: Flush, called from another goroutine while Load runs over four
// connections, returns only once every key counted in Progress.Keys before the call is on
// the destination, whichever connection carried it: what the task's progress checkpoint
// relies on to skip that many keys on a resume.
func TestLoadFlushCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := rdbWith(t, func(s *testutil.Server) { s.Do(t, "DEBUG", "POPULATE", 60000, "k", 100) })
	dst := testutil.StartServer(t)
	opts := redis.Options{Addr: dst.Addr()}
	// Small windows: the connections lag behind the decoder, as against a busy destination.
	wopts := writer.Options{Target: opts, MaxInFlight: 64}
	main, err := writer.Open(ctx, wopts)
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	l := &Loader{Writer: main, Connections: 4, Progress: &Progress{},
		OpenExtra: func(ctx context.Context, i int) (*writer.Writer, error) {
			if i < 2 || i > 4 {
				t.Errorf("OpenExtra(%d): want connections 2 to 4", i)
			}
			return writer.Open(ctx, wopts)
		}}
	done := make(chan error, 1)
	go func() { done <- l.Load(ctx, rdb.NewDecoder(bytes.NewReader(data), rdb.Options{})) }()
	c := dst.Conn(t)
	checks, behind := 0, 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		n := l.Progress.Keys.Load()
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := c.Do(ctx, "DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		checks++
		if v.Int < n {
			t.Fatalf("after Flush the destination has %d keys, %d were counted before it", v.Int, n)
		}
		if v.Int > n {
			behind++ // the count trails the writes, never the other way round
		}
	}
	if l.Progress.Keys.Load() != 60000 {
		t.Fatalf("Progress.Keys = %d, want 60000", l.Progress.Keys.Load())
	}
	if checks < 3 || behind == 0 {
		t.Fatalf("only %d checks (%d with the count behind) while loading: the test did not overlap the load", checks, behind)
	}
}
