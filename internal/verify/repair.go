package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/resp"
)

// Repair thresholds: a value above them is copied with commands in windows instead of one
// DUMP/RESTORE, whose payload would have to sit whole in memory (and under the server's
// proto-max-bulk-len).
const (
	repairDumpMaxElems = 100_000
	repairDumpMaxBytes = 32 << 20
	// repairBatch is how many differences one repair job handles.
	repairBatch = 64
)

// RepairStats count repair actions by outcome.
type RepairStats struct {
	Restored  int `json:"restored"`  // rewritten with DUMP/RESTORE
	Rewritten int `json:"rewritten"` // rewritten with commands (big value, or RESTORE refused)
	TTLFixed  int `json:"ttl_fixed"` // PEXPIRE or PERSIST only
	Deleted   int `json:"deleted"`   // extra keys removed (--repair-extra)
	Skipped   int `json:"skipped"`   // nothing done (extra without --repair-extra, key gone, changed)
	Failed    int `json:"failed"`
}

// AuditEntry is one line of the audit log: one action on one destination key.
type AuditEntry struct {
	Time      time.Time `json:"time"`
	Action    string    `json:"action"` // restore, rewrite, pexpire, persist, delete, skip
	DB        int       `json:"db"`
	TargetDB  int       `json:"target_db"`
	Key       string    `json:"key"`
	TargetKey string    `json:"target_key,omitempty"` // the destination's name, under a key prefix
	KeyBase64 string    `json:"key_base64,omitempty"`
	Class     Class     `json:"class"`
	Result    string    `json:"result"` // ok, skipped, failed
	Detail    string    `json:"detail,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// repairer holds the state shared by the repair jobs.
type repairer struct {
	v        *verifier
	mu       sync.Mutex
	stats    RepairStats
	actions  map[diffID]string
	auditErr error
}

// repair acts on every difference and returns, per key, what was done.
func (v *verifier) repair(ctx context.Context, diffs []Diff) (map[diffID]string, RepairStats, error) {
	r := &repairer{v: v, actions: make(map[diffID]string, len(diffs))}
	var jobs []job
	for i := 0; i < len(diffs); i += repairBatch {
		chunk := diffs[i:min(i+repairBatch, len(diffs))]
		jobs = append(jobs, func(ctx context.Context, w *worker) error {
			for _, d := range chunk {
				if err := r.one(ctx, w, d); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if v.opts.Progress != nil {
		v.opts.Progress.Round(0, "repair", int64(len(diffs)))
	}
	err := v.parallel(ctx, jobs)
	if v.opts.Progress != nil {
		v.opts.Progress.Done()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && r.auditErr != nil {
		err = fmt.Errorf("audit log: %w", r.auditErr)
	}
	v.log.Info("repair done", "restored", r.stats.Restored, "rewritten", r.stats.Rewritten, "ttl_fixed", r.stats.TTLFixed,
		"deleted", r.stats.Deleted, "skipped", r.stats.Skipped, "failed", r.stats.Failed)
	return r.actions, r.stats, err
}

// one repairs one key. Reply errors are recorded as failed actions; only a broken
// connection or the end of ctx stops the repair.
func (r *repairer) one(ctx context.Context, w *worker, d Diff) error {
	action, detail, err := r.act(ctx, w, d)
	e := AuditEntry{Time: time.Now().UTC(), Action: action, DB: d.DB, TargetDB: d.TargetDB, Key: d.Key, TargetKey: d.TargetKey, Class: d.Class, Detail: detail, Result: "ok"}
	var re *resp.Error
	switch {
	case err != nil && !errors.As(err, &re) && !errors.Is(err, errRepairUnsupported):
		e.Result, e.Error = "failed", err.Error()
		r.record(d, e)
		return err
	case err != nil:
		e.Result, e.Error = "failed", err.Error()
	case action == "skip":
		e.Result = "skipped"
	}
	r.record(d, e)
	w.v.progress(1)
	return nil
}

func (r *repairer) record(d Diff, e AuditEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case e.Result == "failed":
		r.stats.Failed++
		r.actions[d.id()] = e.Action + " failed: " + e.Error
	case e.Result == "skipped":
		r.stats.Skipped++
		r.actions[d.id()] = "skipped: " + e.Detail
	default:
		switch e.Action {
		case "restore":
			r.stats.Restored++
		case "rewrite":
			r.stats.Rewritten++
		case "pexpire", "persist":
			r.stats.TTLFixed++
		case "delete":
			r.stats.Deleted++
		}
		r.actions[d.id()] = e.Action
	}
	if r.v.opts.Audit == nil || r.auditErr != nil {
		return
	}
	if !utf8.ValidString(e.Key) {
		e.KeyBase64 = base64.StdEncoding.EncodeToString([]byte(e.Key))
	}
	b, err := json.Marshal(e)
	if err == nil {
		b = append(b, '\n')
		_, err = r.v.opts.Audit.Write(b)
	}
	r.auditErr = err
}

var errRepairUnsupported = errors.New("cannot repair")

// act decides and performs the action for one difference, from what the source holds now.
func (r *repairer) act(ctx context.Context, w *worker, d Diff) (action, detail string, err error) {
	sdb, ddb, key := d.DB, d.TargetDB, d.Key
	dk := w.dkey(sdb, key) // the destination's name of the key
	sb, _ := w.prepare(sdb, ddb)
	sb.add(key, "TYPE", key)
	sb.add(key, "PTTL", key)
	if err := exec(ctx, sb); err != nil {
		return "restore", "", err
	}
	src, err := readState(sb.calls, sdb, key)
	if err != nil {
		return "restore", "", err
	}
	if !src.present() {
		if !r.v.opts.RepairExtra {
			return "skip", "the source does not have the key; --repair-extra deletes it from the destination", nil
		}
		return "delete", "", r.dst1(ctx, w, ddb, dk, "DEL", dk)
	}
	if d.Class == ClassTTL && d.SourceType == src.typ && d.TargetType == src.typ {
		if src.pttl == -1 {
			return "persist", "", r.dst1(ctx, w, ddb, dk, "PERSIST", dk)
		}
		return "pexpire", fmt.Sprintf("%d ms", src.pttl), r.dst1(ctx, w, ddb, dk, "PEXPIRE", dk, src.pttl)
	}
	ttl := max(src.pttl, 0) // RESTORE's 0 means no TTL
	if cmd := lengthCommand(src.typ); cmd != "" {
		n, err := r.src1(ctx, w, sdb, key, cmd, key)
		if err != nil {
			return "restore", "", err
		}
		if (src.typ == "string" && n.Int > r.v.dumpMaxBytes) || (src.typ != "string" && n.Int > r.v.dumpMaxElems) {
			detail, err := r.copyByCommands(ctx, w, sdb, ddb, key, src.typ, src.pttl)
			return "rewrite", detail, err
		}
	}
	dump, err := r.src1(ctx, w, sdb, key, "DUMP", key)
	if err != nil {
		return "restore", "", err
	}
	if dump.Null {
		return "skip", "the key left the source during the repair", nil
	}
	err = r.dst1(ctx, w, ddb, dk, "RESTORE", dk, ttl, dump.Str, "REPLACE")
	var re *resp.Error
	if errors.As(err, &re) && (strings.Contains(re.Msg, "payload version") || strings.Contains(re.Msg, "Bad data format")) {
		// The destination cannot read the source's encoding (an older server): copy with
		// commands instead.
		detail, err := r.copyByCommands(ctx, w, sdb, ddb, key, src.typ, src.pttl)
		return "rewrite", "RESTORE refused the payload; " + detail, err
	}
	return "restore", fmt.Sprintf("%d bytes, ttl %d ms", len(dump.Str), ttl), err
}

// src1 and dst1 run one command for key on one side; an error reply is returned as error.
func (r *repairer) src1(ctx context.Context, w *worker, db int, key string, args ...any) (resp.Value, error) {
	return one(ctx, w.src, db, key, args...)
}

func (r *repairer) dst1(ctx context.Context, w *worker, db int, key string, args ...any) error {
	_, err := one(ctx, w.dst, db, key, args...)
	return err
}

func one(ctx context.Context, s *session, db int, key string, args ...any) (resp.Value, error) {
	b := &batch{s: s, db: db}
	b.add(key, args...)
	if err := exec(ctx, b); err != nil {
		return resp.Value{}, err
	}
	if err := b.calls[0].err; err != nil {
		return b.calls[0].v, fmt.Errorf("%s %s %s (db %d): %w", s.ep.name, args[0], quoteKey(key), db, err)
	}
	return b.calls[0].v, nil
}

// tempKey returns a temporary key name in the same cluster slot as key, or "" when no name
// can be built that is (a key with braces but no hash tag).
func (v *verifier) tempKey(key string) string {
	tag := key
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			tag = key[open+1 : open+1+n]
		}
	}
	if strings.ContainsAny(tag, "{}") {
		return ""
	}
	t := "{" + tag + "}:ferry:verify:repair:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":" + strconv.FormatInt(v.tmpSeq.Add(1), 10)
	if command.SlotString(t) != command.SlotString(key) {
		return ""
	}
	return t
}

// copyByCommands rebuilds a value on the destination from the source in windows: into a
// temporary key in the same slot, renamed over the key at the end, so readers never see a
// half-built value (unless no such name exists, then directly into the key).
func (r *repairer) copyByCommands(ctx context.Context, w *worker, sdb, ddb int, key, typ string, pttl int64) (string, error) {
	v := r.v
	dk := w.dkey(sdb, key)
	target := v.tempKey(dk)
	direct := target == ""
	if direct {
		target = dk
	}
	if err := r.dst1(ctx, w, ddb, target, "DEL", target); err != nil {
		return "", err
	}
	note := ""
	var err error
	switch typ {
	case "string":
		for off := int64(0); ; off += chunkBytes {
			s, e := r.src1(ctx, w, sdb, key, "GETRANGE", key, off, off+chunkBytes-1)
			if err = e; err != nil || len(s.Str) == 0 {
				break
			}
			if err = r.dst1(ctx, w, ddb, target, "APPEND", target, s.Str); err != nil {
				break
			}
		}
	case "hash", "set", "zset":
		k := map[string]scanKind{"hash": hashKind, "set": setKind, "zset": zsetKind}[typ]
		write := map[string]string{"hash": "HSET", "set": "SADD", "zset": "ZADD"}[typ]
		err = r.scanWindows(ctx, w, sdb, key, k, func(items []resp.Value) error {
			args := []any{write, target}
			for i := 0; i < len(items); i++ {
				if typ == "zset" && i+1 < len(items) {
					args = append(args, items[i+1].Str, items[i].Str) // score member
					i++
					continue
				}
				args = append(args, items[i].Str)
			}
			return r.dst1(ctx, w, ddb, target, args...)
		})
	case "list":
		for start := int64(0); ; start += chunkElems {
			s, e := r.src1(ctx, w, sdb, key, "LRANGE", key, start, start+chunkElems-1)
			if err = e; err != nil || len(s.Elems) == 0 {
				break
			}
			args := []any{"RPUSH", target}
			for _, it := range s.Elems {
				args = append(args, it.Str)
			}
			if err = r.dst1(ctx, w, ddb, target, args...); err != nil {
				break
			}
		}
	case "stream":
		note, err = r.copyStream(ctx, w, sdb, ddb, key, target)
	default:
		return "", fmt.Errorf("%w: %s is a %s, which only DUMP/RESTORE can copy", errRepairUnsupported, quoteKey(key), typ)
	}
	if err != nil {
		return "", err
	}
	if !direct {
		if err := r.dst1(ctx, w, ddb, target, "RENAME", target, dk); err != nil {
			return "", err
		}
	}
	if pttl >= 0 {
		if err := r.dst1(ctx, w, ddb, dk, "PEXPIRE", dk, pttl); err != nil {
			return "", err
		}
	}
	return strings.TrimPrefix(fmt.Sprintf("copied as a %s with commands; %s", typ, note), "; "), nil
}

// scanWindows walks key on the source with HSCAN/SSCAN/ZSCAN and hands each window's raw
// items to each.
func (r *repairer) scanWindows(ctx context.Context, w *worker, sdb int, key string, k scanKind, each func([]resp.Value) error) error {
	cursor := "0"
	for {
		v, err := r.src1(ctx, w, sdb, key, k.scan, key, cursor, "COUNT", chunkElems)
		if err != nil {
			return err
		}
		next, items, err := cursorText(v)
		if err != nil {
			return err
		}
		if len(items) > 0 {
			if err := each(items); err != nil {
				return err
			}
		}
		if next == "0" {
			return nil
		}
		cursor = next
	}
}

// copyStream copies a stream's entries, its last and max-deleted IDs and entries-added, and
// its consumer groups (last-delivered-id, entries-read). Pending entries and consumers
// cannot be recreated by commands without re-delivering; the note says so.
func (r *repairer) copyStream(ctx context.Context, w *worker, sdb, ddb int, key, target string) (string, error) {
	start := "-"
	n := 0
	for {
		s, err := r.src1(ctx, w, sdb, key, "XRANGE", key, start, "+", "COUNT", chunkElems)
		if err != nil {
			return "", err
		}
		if len(s.Elems) == 0 {
			break
		}
		for _, e := range s.Elems {
			if len(e.Elems) != 2 {
				return "", fmt.Errorf("XRANGE %s: malformed entry", quoteKey(key))
			}
			args := []any{"XADD", target, e.Elems[0].Str}
			for _, f := range e.Elems[1].Elems {
				args = append(args, f.Str)
			}
			if err := r.dst1(ctx, w, ddb, target, args...); err != nil {
				return "", err
			}
			n++
		}
		start = "(" + string(s.Elems[len(s.Elems)-1].Elems[0].Str)
	}
	info, err := r.src1(ctx, w, sdb, key, "XINFO", "STREAM", key)
	if err != nil {
		return "", err
	}
	f := flatMap(info)
	last := render(f["last-generated-id"])
	if n == 0 {
		// XADD cannot create an empty stream; add and trim one entry.
		if err := r.dst1(ctx, w, ddb, target, "XADD", target, "MAXLEN", 0, "0-1", "f", "v"); err != nil {
			return "", err
		}
	}
	setid := []any{"XSETID", target, last}
	if ea, ok := f["entries-added"]; ok {
		setid = append(setid, "ENTRIESADDED", ea.Int, "MAXDELETEDID", render(f["max-deleted-entry-id"]))
	}
	if err := r.dst1(ctx, w, ddb, target, setid...); err != nil {
		return "", err
	}
	groups, err := r.src1(ctx, w, sdb, key, "XINFO", "GROUPS", key)
	if err != nil {
		return "", err
	}
	pel := false
	for _, g := range groups.Elems {
		gf := flatMap(g)
		args := []any{"XGROUP", "CREATE", target, gf["name"].Str, render(gf["last-delivered-id"])}
		if er, ok := gf["entries-read"]; ok && !er.Null {
			args = append(args, "ENTRIESREAD", er.Int)
		}
		if err := r.dst1(ctx, w, ddb, target, args...); err != nil {
			return "", err
		}
		if gf["pending"].Int > 0 || gf["consumers"].Int > 0 {
			pel = true
		}
	}
	if pel {
		return "consumers and pending entries not copied (DUMP/RESTORE would have)", nil
	}
	return "", nil
}
