package writer

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// readCkpt is a Reconcile that reads the offset from key "ckpt" in db 0.
func readCkpt(ctx context.Context, c *redis.Conn, _ int64) (int64, error) {
	if _, err := c.Do(ctx, "SELECT", 0); err != nil {
		return 0, err
	}
	v, err := c.Do(ctx, "GET", "ckpt")
	if err != nil || v.Null {
		return -1, err
	}
	return strconv.ParseInt(string(v.Str), 10, 64)
}

// batch writes MULTI INCR n RPUSH l <off> SET ckpt <off> EXEC, with the offset on EXEC.
func batch(t *testing.T, w *Writer, db int, off int64) {
	t.Helper()
	o := strconv.FormatInt(off, 10)
	write(t, w, cmd(db, 0, "MULTI"))
	write(t, w, cmd(db, 0, "INCR", "n"))
	write(t, w, cmd(db, 0, "RPUSH", "l", o))
	write(t, w, cmd(0, 0, "SET", "ckpt", o))
	write(t, w, cmd(0, off, "EXEC"))
}

// TestReconcileAfterLostReplies: the destination executes checkpoint batches whose replies
// never come back (a blackhole on the reply path). Without Reconcile the writer resends
// them and INCR/RPUSH apply twice; with it, the checkpoint read on the new connection
// retires them and nothing is applied twice. Batches the destination never saw are sent.
func TestReconcileAfterLostReplies(t *testing.T) {
	for _, reconcile := range []bool{false, true} {
		name := "without"
		if reconcile {
			name = "with"
		}
		t.Run(name, func(t *testing.T) {
			s := testutil.StartServer(t)
			p := testutil.StartFaultProxy(t, s.Addr())
			w := open(t, s, func(o *Options) {
				o.Target.Addr = p.Addr()
				o.Target.IOTimeout = 200 * time.Millisecond
				if reconcile {
					o.Reconcile = readCkpt
				}
			})
			batch(t, w, 3, 100)
			flush(t, w)

			// Replies are lost from here on; the commands still reach the server.
			p.Blackhole(testutil.Downstream)
			batch(t, w, 3, 200)
			batch(t, w, 3, 300)
			// Each batch's replies: +OK, 3 × +QUEUED, and EXEC's *3 :n :len +OK.
			const replyBytes = 5 + 3*9 + 4 + 4 + 4 + 5
			waitFor(t, "the destination to execute both batches and the proxy to drop their replies", func() bool {
				return p.Dropped(testutil.Downstream) >= 2*replyBytes
			})
			p.Clear() // resets the connection; the writer reconnects
			batch(t, w, 3, 400)
			flush(t, w)

			n := dbDo(t, s, 3, "GET", "n")
			l := dbDo(t, s, 3, "LLEN", "l")
			st := w.Stats()
			if reconcile {
				if string(n.Str) != "4" || l.Int != 4 {
					t.Fatalf("with Reconcile: n=%s, %d list elements; want 4 and 4 (each batch once)", n.Str, l.Int)
				}
				if st.Reconciled == 0 || w.Applied() != 400 {
					t.Fatalf("reconciled %d commands, applied %d; want > 0 and 400", st.Reconciled, w.Applied())
				}
			} else if string(n.Str) != "6" || l.Int != 6 {
				// The failure Reconcile exists for: the lost replies' batches applied twice.
				t.Fatalf("without Reconcile: n=%s, %d list elements; want 6 and 6 (two batches resent)", n.Str, l.Int)
			}
		})
	}
}

// TestReconcileStops: an error wrapping ErrStop stops the writer with it; other errors are
// retried like a failed dial.
func TestReconcileStops(t *testing.T) {
	s := testutil.StartServer(t)
	calls := 0
	errRewound := errors.New("destination rewound")
	w := open(t, s, func(o *Options) {
		o.Reconcile = func(ctx context.Context, c *redis.Conn, applied int64) (int64, error) {
			calls++
			if calls == 1 {
				return 0, errors.New("transient")
			}
			if applied != 10 {
				t.Errorf("Reconcile got applied %d, want 10", applied)
			}
			return 0, errors.Join(ErrStop, errRewound)
		}
	})
	write(t, w, cmd(0, 10, "SET", "a", "1"))
	flush(t, w)
	s.Do(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	write(t, w, cmd(0, 20, "SET", "a", "2"))
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("writer did not stop")
	}
	if err := w.Err(); !errors.Is(err, errRewound) {
		t.Fatalf("writer stopped with %v; want the Reconcile error", err)
	}
	if calls != 2 {
		t.Fatalf("Reconcile called %d times; want 2 (a transient error is retried)", calls)
	}
}
