package throttle

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHandler: the status endpoint reads and changes the limits of each phase, and a
// change reaches a waiting caller at once.
func TestHandler(t *testing.T) {
	full, incr := New(Limits{MaxOps: 50000}), New(Limits{MaxOps: 1})
	h := Handler(map[string]*Limiter{"full": full, "incremental": incr})
	do := func(method, body string) (int, map[string]PhaseState, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/throttle", strings.NewReader(body)))
		var st map[string]PhaseState
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatalf("%s: %v: %s", method, err, rec.Body)
			}
		}
		return rec.Code, st, rec.Body.String()
	}

	code, st, _ := do(http.MethodGet, "")
	if code != 200 || st["full"].Limits.MaxOps != 50000 || st["incremental"].Limits.MaxOps != 1 {
		t.Fatalf("GET = %d %+v", code, st)
	}

	// A caller stuck behind 1 op/s is released when the limit is raised through the handler.
	done := make(chan error, 1)
	go func() { done <- incr.Wait(context.Background(), 20, 0) }()
	deadline := time.Now().Add(2 * time.Second)
	for incr.Stats().Waiting == 0 && time.Now().Before(deadline) {
		<-time.After(5 * time.Millisecond)
	}
	if r := incr.Reason(); r != "throttled: max-ops 1" {
		t.Errorf("Reason while waiting = %q", r)
	}
	code, st, body := do(http.MethodPut, `{"incremental": {"max_ops": 5000, "max_bytes": "64MiB"}}`)
	if code != 200 || st["incremental"].Limits != (Limits{MaxOps: 5000, MaxBytes: 64 << 20}) || st["full"].Limits.MaxOps != 50000 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("raising the limit through the handler did not release the waiting caller within a second")
	}
	// A field left out keeps its value; 0 lifts a limit.
	if code, st, body = do(http.MethodPost, `{"incremental": {"max_bytes": 0}}`); code != 200 || st["incremental"].Limits != (Limits{MaxOps: 5000}) {
		t.Fatalf("POST = %d %s", code, body)
	}
	for _, bad := range []string{`{"partial": {"max_ops": 1}}`, `{"full": {"max_ops": -1}}`, `{"full": {"speed": 1}}`, `{"full": {"max_bytes": "lots"}}`, `not json`} {
		if code, _, body := do(http.MethodPut, bad); code != http.StatusBadRequest {
			t.Errorf("PUT %s = %d %s", bad, code, body)
		}
	}
	if got := full.Limits(); got.MaxOps != 50000 {
		t.Errorf("a refused request changed the limits: %+v", got)
	}
	if code, _, _ := do(http.MethodDelete, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE = %d", code)
	}
}
