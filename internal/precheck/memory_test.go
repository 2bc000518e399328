package precheck

import (
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// TestMemory: a target whose maxmemory cannot hold the source's data fails with the
// numbers and the CONFIG SET to run, with noeviction and with an evicting policy alike;
// an evicting policy warns on its own, explaining the silent eviction; a target with room
// and noeviction passes.
func TestMemory(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t)
	src.Do(t, "DEBUG", "POPULATE", "3000", "key", "1000") // ≈ 3.5 MiB of data

	cases := []struct {
		name      string
		args      []string
		memory    Result
		memText   []string
		eviction  Result
		evictText []string
	}{
		{"small noeviction", []string{"--maxmemory", "2mb", "--maxmemory-policy", "noeviction"},
			Fail, []string{"not enough memory", "maxmemory 2.0 MiB", "needs ≥", "CONFIG SET maxmemory"},
			Pass, []string{"noeviction: a full target refuses writes with OOM"}},
		{"small volatile-lru", []string{"--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru"},
			Fail, []string{"not enough memory", "CONFIG SET maxmemory"},
			Warn, []string{"maxmemory-policy volatile-lru", "evicts keys without telling anyone", "CONFIG SET maxmemory-policy noeviction"}},
		{"large volatile-lru", []string{"--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"},
			Pass, []string{"maxmemory 64.0 MiB"},
			Warn, []string{"maxmemory-policy volatile-lru", "silently no longer a copy"}},
		{"large noeviction", []string{"--maxmemory", "64mb"},
			Pass, []string{"source data ≈ 3."},
			Pass, []string{"noeviction"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dst := testutil.StartServer(t, c.args...)
			rep := runCheck(t, Config{Source: addr(src), Target: addr(dst), RateSample: fastRate})
			expect(t, rep, SideTarget, CheckMemory, c.memory, c.memText...)
			expect(t, rep, SideTarget, CheckEviction, c.eviction, c.evictText...)
		})
	}
}

// TestMemoryPure: the target's usage counts, and the headroom is 10 %.
func TestMemoryPure(t *testing.T) {
	info := map[string]string{
		"used_memory": "11000000", "used_memory_startup": "900000", "mem_replication_backlog": "1048576",
		"mem_clients_slaves": "0", "mem_clients_normal": "51424",
	}
	if got, want := dataSize(info), int64(11000000-900000-1048576-51424); got != want {
		t.Errorf("dataSize = %d, want %d", got, want)
	}
	if got := dataSize(map[string]string{"used_memory": "5"}); got != 5 {
		t.Errorf("dataSize without parts = %d, want 5", got)
	}
	if got := dataSize(map[string]string{"used_memory": "5", "used_memory_startup": "9"}); got != 0 {
		t.Errorf("dataSize below startup = %d, want 0", got)
	}
}
