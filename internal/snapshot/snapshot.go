// Package snapshot applies an RDB snapshot to a destination: each key as a RESTORE payload
// sliced from the stream when the destination can load it and it is small enough, and as
// chunked commands otherwise. Both `ferry sync` (the full phase) and `ferry rdb restore`
// use it, so a file and a replication transfer take exactly the same path.
package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/throttle"
	"github.com/ferrysync/ferry/internal/writer"
)

// DefaultBigKeyThreshold is the value size above which a key is written as chunked commands
// instead of one RESTORE: large enough that almost every key takes the fast path, small
// enough that no single command stalls the destination for long.
const DefaultBigKeyThreshold = 8 << 20

// commandElements is how many elements (members, field-value pairs) one command of the
// command path carries. The destination pays per command as well as per element, so
// bigger commands load big keys faster (measured: a 1 M-element hash, list, set and zset
// in 12 % less time, with a quarter less of Ferry's CPU, than at 512). One such command of
// small elements runs for 2–4 ms on the destination (Redis 7.0, INFO commandstats) —
// less than one RESTORE of a value near the big-key threshold. The command writer's
// byte cap (1 MiB) still bounds commands of large elements.
const commandElements = 4096

// Progress counts what a Loader has done; safe to read while it runs.
type Progress struct {
	Keys      atomic.Int64 // keys written (RESTORE or command path)
	BigKeys   atomic.Int64 // keys written through the command path
	Functions atomic.Int64 // function libraries loaded
	Skipped   atomic.Int64 // keys not written (Ferry's own keys)
	Filtered  atomic.Int64 // keys not selected by the Filter
	Bytes     atomic.Int64 // RDB bytes consumed
}

// DefaultConnections is how many destination connections a Loader spreads keys over when
// it can open more (Loader.Open set and Connections 0). A destination executes commands
// on one thread, so more connections do not make it faster by themselves; they keep it
// fed while one connection waits on its socket, and spread Ferry's own encoding and reply
// parsing over several goroutines. Four is where the gain levels off on a LAN.
const DefaultConnections = 4

// Destination is what a Loader writes through: a *writer.Writer (one connection) or a
// cluster router (one writer per master), which offer the same ordered Write and Flush.
type Destination interface {
	Write(ctx context.Context, cmd writer.Command) error
	Flush(ctx context.Context) error
}

// Loader writes snapshot records through a writer.
type Loader struct {
	// Writer is the destination connection. Function libraries and, when Connections is
	// 1, every key go through it.
	Writer Destination
	// Connections is how many destination connections RESTOREs are spread over, Writer
	// included, each key to the one a hash of its name picks: keys are independent of
	// each other in a snapshot (a key appears once), so their order across connections
	// does not matter. Values written as commands (big keys) all go through Writer, so
	// that one key's commands stay in order on one connection and the other connections
	// never carry a command that cannot be resent (an RPUSH chunk), only RESTORE …
	// REPLACE; it also keeps the memory of large commands in one window. Load waits for
	// all of them to acknowledge everything before it returns. Default 1, or
	// DefaultConnections when Open is set.
	Connections int
	// Open opens one more writer to the destination, configured like Writer; required
	// for Connections > 1. Load closes what it opened before it returns. To keep the
	// memory of one connection, give each writer a share of the byte window
	// (writer.Options.MaxInFlightBytes = writer.DefaultMaxInFlightBytes / Connections,
	// Writer included).
	Open func(ctx context.Context) (*writer.Writer, error)
	// OpenExtra, when set instead of Open, opens the connection number i (2 … Connections):
	// for a caller that tells the connections apart (a client name each).
	OpenExtra func(ctx context.Context, i int) (*writer.Writer, error)
	// Target is what the destination's RESTORE accepts (see DestinationTarget).
	Target rdb.Target
	// BigKeyThreshold: values larger than this many bytes go through the command path.
	// Default DefaultBigKeyThreshold.
	BigKeyThreshold int64
	// ForceCommands sends every value through the command path (tests, and destinations
	// whose RESTORE is disabled).
	ForceCommands bool
	// SkipPrefix: keys starting with it are not written (Ferry's own keys).
	SkipPrefix string
	// Discard reads the snapshot without writing anything (incremental-only sync).
	Discard bool
	// Filter selects and maps keys (DBs, key patterns, types); nil copies everything as is.
	Filter *filter.Filter
	// Throttle bounds keys and bytes per second; nil is unlimited.
	Throttle *throttle.Limiter
	Logger   *slog.Logger
	Progress *Progress

	payload rdb.Payload
	cmds    *rdb.CommandWriter
	keyBuf  []byte        // a key renamed by the Filter's prefix (writers copy what they are given)
	writers []Destination // Writer first, then the connections Load opened
	seed    maphash.Seed

	mu     sync.Mutex    // guards opened against Flush from another goroutine
	opened []Destination // what Flush flushes: l.writers while Load runs
}

// Flush waits until every connection of a running Load has acknowledged everything
// written to it before the call (Writer's Flush when Load has not opened its connections
// or has returned). A caller that records progress reads Progress.Keys first and then
// calls Flush: every key counted is then on the destination, whichever connection it took.
// Safe to call from another goroutine while Load runs.
func (l *Loader) Flush(ctx context.Context) error {
	l.mu.Lock()
	ws := l.opened
	l.mu.Unlock()
	switch len(ws) {
	case 0:
		return l.Writer.Flush(ctx)
	case 1:
		return ws[0].Flush(ctx)
	}
	// All at once: each Flush waits for what its connection had queued when it was
	// called, so one after the other would also wait for what the loader queues meanwhile.
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.Flush(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Load applies every record dec yields, then waits until the destination has acknowledged
// all of it. It returns when dec reaches the end of the file.
func (l *Loader) Load(ctx context.Context, dec *rdb.Decoder) (err error) {
	if l.Progress == nil {
		l.Progress = &Progress{}
	}
	if l.Logger == nil {
		l.Logger = slog.New(slog.DiscardHandler)
	}
	if l.BigKeyThreshold <= 0 {
		l.BigKeyThreshold = DefaultBigKeyThreshold
	}
	l.cmds = rdb.NewCommandWriter(rdb.CommandOptions{Target: l.Target, MaxElements: commandElements})
	if !l.Discard {
		closeExtra, err := l.openWriters(ctx)
		if err != nil {
			return err
		}
		defer closeExtra()
	}
	skip := []byte(l.SkipPrefix)
	for {
		e, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the snapshot at byte %d: %w", dec.Offset(), err)
		}
		l.Progress.Bytes.Store(dec.Offset())
		if l.Discard {
			continue
		}
		switch e.Record {
		case rdb.RecordFunction:
			if err := l.Writer.Write(ctx, writer.Command{DB: -1, Args: rdb.FunctionLoadArgs(e.Value)}); err != nil {
				return fmt.Errorf("load function library %q: %w", e.Key, err)
			}
			l.Progress.Functions.Add(1)
		case rdb.RecordModuleAux:
			l.Logger.Warn("the snapshot has module data outside the keyspace; it cannot be transferred", "module", e.Module)
		case rdb.RecordKey:
			if len(skip) > 0 && bytes.HasPrefix(e.Key, skip) {
				l.Progress.Skipped.Add(1)
				continue
			}
			db, ok := l.Select(e)
			if !ok {
				l.Progress.Filtered.Add(1)
				continue
			}
			before := dec.Offset()
			if err := l.writeKey(ctx, dec, e, db); err != nil {
				return err
			}
			l.Progress.Keys.Add(1)
			if l.Throttle != nil {
				// Accounted after the key: the wait delays the next one.
				if err := l.Throttle.Wait(ctx, 1, dec.Offset()-before); err != nil {
					return err
				}
			}
		}
	}
	l.Progress.Bytes.Store(dec.Offset())
	if l.Discard {
		return nil
	}
	for _, w := range l.writers {
		if err := w.Flush(ctx); err != nil {
			return fmt.Errorf("apply the snapshot: %w", err)
		}
	}
	return nil
}

// openWriters makes l.writers: Writer, then Connections−1 more from Open. The returned
// function closes those Load opened.
func (l *Loader) openWriters(ctx context.Context) (func(), error) {
	n := l.Connections
	if n <= 0 {
		n = 1
		if l.Open != nil {
			n = DefaultConnections
		}
	}
	open := l.OpenExtra
	if open == nil && l.Open != nil {
		open = func(ctx context.Context, _ int) (*writer.Writer, error) { return l.Open(ctx) }
	}
	if n > 1 && open == nil {
		return nil, fmt.Errorf("snapshot loader: %d connections need Loader.Open", n)
	}
	l.writers = append(l.writers[:0], l.Writer)
	closeExtra := func() {
		l.mu.Lock()
		l.opened = nil
		l.mu.Unlock()
		for _, w := range l.writers[1:] {
			_ = w.(*writer.Writer).Close() // Open made it
		}
		l.writers = l.writers[:1]
	}
	for len(l.writers) < n {
		w, err := open(ctx, len(l.writers)+1)
		if err != nil {
			closeExtra()
			return nil, fmt.Errorf("open destination connection %d of %d for the snapshot: %w", len(l.writers)+1, n, err)
		}
		l.writers = append(l.writers, w)
	}
	l.seed = maphash.MakeSeed()
	l.mu.Lock()
	l.opened = slices.Clone(l.writers) // a copy: a Flush may still hold it after the next Load reuses l.writers
	l.mu.Unlock()
	return closeExtra, nil
}

// writerFor is the connection a key's commands go to.
func (l *Loader) writerFor(key []byte) Destination {
	if len(l.writers) == 1 {
		return l.writers[0]
	}
	return l.writers[maphash.Bytes(l.seed, key)%uint64(len(l.writers))]
}

// Select says whether the Filter copies a key entry, and into which destination DB.
func (l *Loader) Select(e *rdb.Entry) (db int, ok bool) {
	if l.Filter == nil {
		return e.DB, true
	}
	return l.Filter.SnapshotKey(e.DB, e.Key, e.Kind())
}

// writeKey sends one key into destination DB db: RESTORE when possible, the command path
// otherwise; under the Filter's key prefix for its database, if any.
func (l *Loader) writeKey(ctx context.Context, dec *rdb.Decoder, e *rdb.Entry, db int) error {
	key := e.Key
	var prefix []byte
	if l.Filter != nil {
		if prefix = l.Filter.KeyPrefix(e.DB); prefix != nil {
			l.keyBuf = append(append(l.keyBuf[:0], prefix...), e.Key...)
			key = l.keyBuf
		}
	}
	if !l.ForceCommands {
		version, verr := rdb.PayloadVersion(dec.Header().Flavor, e.Type, l.Target)
		switch {
		case verr == nil:
			raw, ok, err := dec.Raw(int(l.BigKeyThreshold))
			if err != nil {
				return fmt.Errorf("read the snapshot: %w", err)
			}
			if ok {
				p := l.payload.BuildFrom(dec, e.Type, raw, version)
				args := l.payload.RestoreArgs(key, p, e.ExpireAt, e.Idle, e.Freq)
				if err := l.writerFor(e.Key).Write(ctx, writer.Command{DB: db, Args: args}); err != nil {
					return fmt.Errorf("restore key %q (db %d): %w", clip(e.Key), db, err)
				}
				return nil
			}
		case !errors.Is(verr, rdb.ErrNeedsCommands):
			return fmt.Errorf("key %q (db %d): %w", clip(e.Key), e.DB, verr)
		}
	}
	l.Progress.BigKeys.Add(1)
	w := l.Writer // see Connections
	err := l.cmds.WriteValue(dec, func(args [][]byte) error {
		if prefix != nil {
			var err error
			if args, err = l.Filter.RenameKeys(e.DB, args); err != nil {
				return err
			}
		}
		return w.Write(ctx, writer.Command{DB: db, Args: args})
	})
	if err != nil {
		return fmt.Errorf("write key %q (db %d) as commands: %w", clip(e.Key), db, err)
	}
	return nil
}

// DestinationTarget asks a destination what RESTORE payloads it accepts.
func DestinationTarget(ctx context.Context, opts redis.Options) (rdb.Target, error) {
	c, err := redis.Dial(ctx, opts)
	if err != nil {
		return rdb.Target{}, err
	}
	defer c.Close()
	info, err := c.Info(ctx, "server")
	if err != nil {
		return rdb.Target{}, fmt.Errorf("read the destination's version (INFO server): %w", err)
	}
	name, version := info["server_name"], info["redis_version"]
	if name == "valkey" && info["valkey_version"] != "" {
		version = info["valkey_version"]
	}
	return rdb.TargetFor(name, version), nil
}

// CheckEmpty fails when any DB of the destination holds keys other than those starting
// with ownPrefix (a task's own checkpoint keys), naming the DBs and their key counts.
// It is the "precheck and block" conflict mode.
func CheckEmpty(ctx context.Context, opts redis.Options, ownPrefix string) error {
	c, err := redis.Dial(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.Info(ctx, "keyspace")
	if err != nil {
		return fmt.Errorf("read the destination's keyspace: %w", err)
	}
	var busy []string
	for name, v := range info {
		db, err := strconv.Atoi(strings.TrimPrefix(name, "db"))
		if err != nil || !strings.HasPrefix(name, "db") {
			continue
		}
		n := keyspaceKeys(v)
		if n == 0 {
			continue
		}
		own, err := countPrefix(ctx, c, db, ownPrefix)
		if err != nil {
			return err
		}
		if n > own {
			busy = append(busy, fmt.Sprintf("db%d has %d keys", db, n-own))
		}
	}
	if len(busy) == 0 {
		return nil
	}
	sort.Strings(busy)
	return fmt.Errorf("destination %s is not empty (%s): with --existing block Ferry refuses to mix its data with existing keys; empty those databases, or pass --existing overwrite to replace the keys the source has and keep the rest",
		opts.Addr, strings.Join(busy, ", "))
}

// keyspaceKeys reads N from an INFO keyspace value "keys=N,expires=M,avg_ttl=T".
func keyspaceKeys(v string) int64 {
	for _, f := range strings.Split(v, ",") {
		if n, ok := strings.CutPrefix(f, "keys="); ok {
			k, _ := strconv.ParseInt(n, 10, 64)
			return k
		}
	}
	return 0
}

// countPrefix counts the keys of one DB that start with prefix (a few at most).
func countPrefix(ctx context.Context, c *redis.Conn, db int, prefix string) (int64, error) {
	if prefix == "" {
		return 0, nil
	}
	if _, err := c.Do(ctx, "SELECT", db); err != nil {
		return 0, fmt.Errorf("select db %d on the destination: %w", db, err)
	}
	var n int64
	cursor := "0"
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "MATCH", prefix+"*", "COUNT", 1000)
		if err != nil {
			return 0, fmt.Errorf("scan db %d on the destination: %w", db, err)
		}
		if len(v.Elems) != 2 {
			return 0, fmt.Errorf("scan db %d on the destination: unexpected reply", db)
		}
		cursor = string(v.Elems[0].Str)
		n += int64(len(v.Elems[1].Elems))
		if cursor == "0" {
			return n, nil
		}
	}
}

// clip shortens a key for messages.
func clip(k []byte) string {
	const max = 100
	if len(k) > max {
		return string(k[:max]) + "…"
	}
	return string(k)
}
