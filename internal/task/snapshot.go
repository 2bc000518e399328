package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/writer"
)

// destinationTarget asks the destination what RESTORE payloads it accepts.
func destinationTarget(ctx context.Context, opts redis.Options) (rdb.Target, error) {
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

// applySnapshot reads the source's RDB from rep and, when apply is set, writes every key
// to the destination: as a RESTORE payload sliced from the stream when the destination
// can load it and it is at most BigKeyThreshold bytes, otherwise as chunked commands.
// Without apply (incremental-only mode) the RDB is read and discarded.
func (t *Task) applySnapshot(ctx context.Context, rep *replica.Replica, wr *writer.Writer, apply bool) error {
	target, err := destinationTarget(ctx, t.cfg.Target)
	if err != nil {
		return err
	}
	if size := rep.RDBSize(); size > 0 {
		t.st.fullTotal.Store(size)
	}
	src := rep.RDB()
	dec := rdb.NewDecoder(src, rdb.Options{})
	err = t.loadRDB(ctx, dec, wr, target, apply, func() {
		if size := rep.RDBSize(); size > 0 {
			t.st.fullTotal.Store(size)
		}
	})
	if err != nil {
		return err
	}
	// The decoder stops at the checksum; the replica wants its RDB reader drained to
	// io.EOF before the stream starts. Anything left there is not part of the file.
	if extra, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("finish reading the snapshot: %w", err)
	} else if extra > 0 || len(dec.Buffered()) > 0 {
		return fmt.Errorf("the snapshot has %d unexpected bytes after its checksum", extra+int64(len(dec.Buffered())))
	}
	return nil
}

// loadRDB applies every record of dec through wr and waits until the destination has
// acknowledged all of it. progress is called now and then (for the size of a transfer
// that becomes known late).
func (t *Task) loadRDB(ctx context.Context, dec *rdb.Decoder, wr *writer.Writer, target rdb.Target, apply bool, progress func()) error {
	var payload rdb.Payload
	cmds := rdb.NewCommandWriter(rdb.CommandOptions{Target: target})
	threshold := int(t.cfg.BigKeyThreshold)
	var n int64
	for {
		e, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the snapshot at byte %d: %w", dec.Offset(), err)
		}
		t.st.fullBytes.Store(dec.Offset())
		if n++; n%4096 == 0 && progress != nil {
			progress()
		}
		if !apply {
			continue
		}
		switch e.Record {
		case rdb.RecordFunction:
			if err := wr.Write(ctx, writer.Command{DB: -1, Args: rdb.FunctionLoadArgs(e.Value)}); err != nil {
				return fmt.Errorf("load function library %q: %w", e.Key, err)
			}
		case rdb.RecordModuleAux:
			t.log.Warn("the snapshot has module data outside the keyspace that cannot be transferred", "module", e.Module)
		case rdb.RecordKey:
			if strings.HasPrefix(string(e.Key), KeyPrefix) {
				continue // Ferry's own keys (a heartbeat) never reach the destination
			}
			if err := t.writeKey(ctx, dec, e, wr, target, &payload, cmds, threshold); err != nil {
				return err
			}
			t.st.fullKeys.Add(1)
		}
	}
	t.st.fullBytes.Store(dec.Offset())
	if err := wr.Flush(ctx); err != nil {
		return fmt.Errorf("apply the snapshot: %w", err)
	}
	return nil
}

// writeKey sends one snapshot key: RESTORE when possible, the command path otherwise.
func (t *Task) writeKey(ctx context.Context, dec *rdb.Decoder, e *rdb.Entry, wr *writer.Writer, target rdb.Target, payload *rdb.Payload, cmds *rdb.CommandWriter, threshold int) error {
	version, verr := rdb.PayloadVersion(dec.Header().Flavor, e.Type, target)
	switch {
	case verr == nil:
		raw, ok, err := dec.Raw(threshold)
		if err != nil {
			return fmt.Errorf("read the snapshot: %w", err)
		}
		if ok {
			p := payload.Build(e.Type, raw, version)
			args := payload.RestoreArgs(e.Key, p, e.ExpireAt, e.Idle, e.Freq)
			if err := wr.Write(ctx, writer.Command{DB: e.DB, Args: args}); err != nil {
				return fmt.Errorf("restore key %q (db %d): %w", clip(e.Key), e.DB, err)
			}
			return nil
		}
	case !errors.Is(verr, rdb.ErrNeedsCommands):
		return fmt.Errorf("key %q (db %d): %w", clip(e.Key), e.DB, verr)
	}
	t.st.bigKeys.Add(1)
	db := e.DB
	err := cmds.WriteValue(dec, func(args [][]byte) error {
		return wr.Write(ctx, writer.Command{DB: db, Args: args})
	})
	if err != nil {
		return fmt.Errorf("write key %q (db %d) as commands: %w", clip(e.Key), db, err)
	}
	return nil
}

// clip shortens a key for messages.
func clip(k []byte) string {
	const max = 100
	if len(k) > max {
		return string(k[:max]) + "…"
	}
	return string(k)
}
