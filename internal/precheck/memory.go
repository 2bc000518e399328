package precheck

import (
	"context"
	"fmt"
	"strings"
)

// memoryHeadroom is the factor by which the target's free memory must exceed the
// source's data: the same data takes somewhat different space on another server
// (allocator, encodings, fragmentation while it is being written).
const memoryHeadroom = 1.1

// dataSize estimates the memory a server's data takes: used_memory without what is not
// data and does not travel (the empty server's own allocation, the replication backlog,
// client buffers). Servers that do not report the parts count used_memory whole.
func dataSize(info map[string]string) int64 {
	used, _ := infoInt(info, "used_memory")
	rest := used
	for _, f := range []string{"used_memory_startup", "mem_replication_backlog", "mem_clients_slaves", "mem_clients_normal"} {
		if v, ok := infoInt(info, f); ok {
			rest -= v
		}
	}
	return max(rest, 0)
}

// sourceData estimates the memory the synced part of the source takes: the data size,
// scaled by the share of keys in the selected databases.
func (r *runner) sourceData() (bytes int64, note string, ok bool) {
	var all, selected int64
	for _, n := range r.src.nodes {
		if n.info == nil {
			return 0, fmt.Sprintf("could not read INFO of source master %s", n.addr), false
		}
		d := dataSize(n.info)
		var nodeAll, nodeSel int64
		for db, k := range keyspace(n.info, "keys") {
			nodeAll += k
			if r.dbSelected(db) {
				nodeSel += k
			}
		}
		all += d
		if nodeAll > 0 {
			selected += int64(float64(d) * float64(nodeSel) / float64(nodeAll))
		} else {
			selected += d
		}
	}
	if r.cfg.DBs != nil && selected != all {
		return selected, fmt.Sprintf("source data ≈ %s (%s in all, scaled to the selected databases' share of keys)", formatBytes(selected), formatBytes(all)), true
	}
	return all, fmt.Sprintf("source data ≈ %s (used_memory without startup, backlog and client buffers)", formatBytes(all)), true
}

// memory checks that the target has room for the source's data.
func (r *runner) memory(ctx context.Context) Check {
	data, note, ok := r.sourceData()
	if !ok {
		return Check{Result: Warn, Found: "could not check: " + note, Advice: "make every source master reachable and let the user run INFO"}
	}
	parts := []string{note}
	var short []string
	var advice []string
	for _, n := range r.tgt.nodes {
		if n.info == nil {
			return Check{Result: Warn, Found: fmt.Sprintf("could not check: INFO of target %s failed: %v", n.addr, n.err)}
		}
		share := 1.0
		if r.tgt.cluster && n.slots > 0 {
			share = float64(n.slots) / slotCount
		}
		used, _ := infoInt(n.info, "used_memory")
		maxmem, _ := infoInt(n.info, "maxmemory")
		sysmem, _ := infoInt(n.info, "total_system_memory")
		need := used + int64(memoryHeadroom*share*float64(data))
		who := "target"
		if r.tgt.cluster {
			who = fmt.Sprintf("target master %s (%d slots)", n.addr, n.slots)
		}
		switch {
		case maxmem > 0:
			parts = append(parts, fmt.Sprintf("%s maxmemory %s, used %s, needs ≥ %s (its usage + %.1f × the data)", who, formatBytes(maxmem), formatBytes(used), formatBytes(need), memoryHeadroom))
			if need > maxmem {
				short = append(short, who)
				advice = append(advice, fmt.Sprintf("raise maxmemory on %s to at least %s: CONFIG SET maxmemory %d (and in its config file)", n.addr, formatBytes(need), roundUpMiB(need)))
			}
		case sysmem > 0:
			parts = append(parts, fmt.Sprintf("%s has no maxmemory; the machine has %s, used %s, needs ≥ %s", who, formatBytes(sysmem), formatBytes(used), formatBytes(need)))
			if need > sysmem {
				short = append(short, who)
				advice = append(advice, fmt.Sprintf("the data does not fit in %s's RAM (%s): use a larger target, or sync fewer databases", n.addr, formatBytes(sysmem)))
			}
		default:
			parts = append(parts, fmt.Sprintf("%s has no maxmemory and does not report the machine's memory; needs ≥ %s", who, formatBytes(need)))
		}
	}
	found := strings.Join(parts, "; ")
	if len(short) > 0 {
		return Check{Result: Fail, Found: "not enough memory: " + found, Advice: strings.Join(advice, "; ")}
	}
	return Check{Result: Pass, Found: found}
}

// roundUpMiB rounds n up to a whole MiB, for a readable CONFIG SET value.
func roundUpMiB(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

// eviction warns when the target may evict keys: with a maxmemory and a policy other
// than noeviction, a full target drops keys silently and is no longer a copy.
func (r *runner) eviction(ctx context.Context) Check {
	var evicting, fine []string
	for _, n := range r.tgt.nodes {
		if n.info == nil {
			return Check{Result: Warn, Found: fmt.Sprintf("could not check: INFO of target %s failed: %v", n.addr, n.err)}
		}
		policy := n.info["maxmemory_policy"]
		maxmem, _ := infoInt(n.info, "maxmemory")
		who := "target"
		if r.tgt.cluster {
			who = "target master " + n.addr
		}
		switch {
		case policy == "":
			fine = append(fine, who+" does not report maxmemory_policy")
		case maxmem > 0 && policy != "noeviction":
			evicting = append(evicting, fmt.Sprintf("%s maxmemory-policy %s with maxmemory %s", who, policy, formatBytes(maxmem)))
		case maxmem > 0:
			fine = append(fine, fmt.Sprintf("%s maxmemory-policy noeviction: a full target refuses writes with OOM, which stops the sync visibly", who))
		default:
			fine = append(fine, fmt.Sprintf("%s has no maxmemory, so nothing is evicted (maxmemory-policy %s applies only with one)", who, policy))
		}
	}
	if len(evicting) > 0 {
		return Check{
			Result: Warn,
			Found:  strings.Join(evicting, "; ") + ": when it fills up it evicts keys without telling anyone, and the target is silently no longer a copy of the source",
			Advice: "set CONFIG SET maxmemory-policy noeviction on the target, so that a full target refuses writes (OOM) and the sync stops with a clear error instead of losing keys",
		}
	}
	return Check{Result: Pass, Found: strings.Join(fine, "; ")}
}
