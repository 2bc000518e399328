package precheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// missingSlots returns the slot ranges no entry of ranges covers.
func missingSlots(ranges []slotRange) [][2]int {
	var covered [slotCount]bool
	for _, r := range ranges {
		for s := r.lo; s <= r.hi; s++ {
			covered[s] = true
		}
	}
	var out [][2]int
	for s := 0; s < slotCount; s++ {
		if covered[s] {
			continue
		}
		lo := s
		for s+1 < slotCount && !covered[s+1] {
			s++
		}
		out = append(out, [2]int{lo, s})
	}
	return out
}

func formatSlotRanges(rs [][2]int, limit int) string {
	parts := make([]string, 0, min(len(rs), limit)+1)
	for i, r := range rs {
		if i == limit {
			parts = append(parts, fmt.Sprintf("and %d more ranges", len(rs)-limit))
			break
		}
		if r[0] == r[1] {
			parts = append(parts, strconv.Itoa(r[0]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
	}
	return strings.Join(parts, ", ")
}

// clusterCheck checks that every hash slot is served on a cluster side and that Ferry
// reaches every master.
func (r *runner) clusterCheck(ctx context.Context, s *side) Check {
	info, skip := s.infoOr()
	if skip != nil {
		return *skip
	}
	if !s.cluster {
		return Check{Result: Pass, Found: fmt.Sprintf("standalone %s (cluster_enabled:%s)", roleName(info), orDash(info["cluster_enabled"]))}
	}
	if s.slotsErr != nil {
		c := Check{Result: Fail, Found: "CLUSTER SLOTS failed: " + s.slotsErr.Error()}
		c.Advice = noPermAdvice(s, s.slotsErr, "cluster|slots")
		if c.Advice == "" {
			c.Advice = "Ferry needs the cluster's slot map; check the server's log"
		}
		return c
	}
	c, err := s.dialSeed(ctx)
	if err != nil {
		return Check{Result: Warn, Found: "could not check: " + err.Error()}
	}
	defer c.Close()
	ci, ciErr := clusterInfo(ctx, c)

	var found, advice []string
	result := Pass
	missing := missingSlots(s.slots)
	served := slotCount
	for _, m := range missing {
		served -= m[1] - m[0] + 1
	}
	found = append(found, fmt.Sprintf("%d masters serve %d of %d slots", len(s.nodes), served, slotCount))
	if ciErr == nil {
		found = append(found, fmt.Sprintf("cluster_state:%s, cluster_slots_assigned:%s, cluster_slots_ok:%s, cluster_slots_pfail:%s, cluster_slots_fail:%s",
			ci["cluster_state"], ci["cluster_slots_assigned"], ci["cluster_slots_ok"], ci["cluster_slots_pfail"], ci["cluster_slots_fail"]))
	} else {
		found = append(found, "CLUSTER INFO failed: "+ciErr.Error())
	}
	if len(missing) > 0 {
		result = Fail
		found = append(found, "slots served by no master: "+formatSlotRanges(missing, 8))
		advice = append(advice, fmt.Sprintf("assign the missing slots to masters (redis-cli --cluster fix %s) or wait for a failover to finish: Ferry needs every slot served", s.opts.Addr))
	}
	if ciErr == nil {
		okSlots, _ := strconv.Atoi(ci["cluster_slots_ok"])
		failSlots, _ := strconv.Atoi(ci["cluster_slots_fail"])
		pfail, _ := strconv.Atoi(ci["cluster_slots_pfail"])
		switch {
		case failSlots > 0 || ci["cluster_state"] != "ok" && len(missing) == 0:
			result = Fail
			advice = append(advice, "the cluster is not healthy: bring failed masters back or fail them over (redis-cli --cluster check)")
		case pfail > 0:
			result = max(result, Warn)
			advice = append(advice, "some masters are suspected down (pfail): check them before syncing")
		case okSlots < served:
			result = max(result, Warn)
		}
	}
	var unreachable []string
	for _, n := range s.nodes {
		if n.err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", n.addr, n.err))
		}
	}
	if len(unreachable) > 0 {
		result = Fail
		found = append(found, "masters Ferry cannot reach at the address the cluster announces: "+strings.Join(unreachable, "; "))
		advice = append(advice, "Ferry connects to every master at the address in CLUSTER SLOTS: check cluster-announce-ip/port and the network route from this machine")
	}
	return Check{Result: result, Found: strings.Join(found, "; "), Advice: strings.Join(advice, "; ")}
}

func clusterInfo(ctx context.Context, c *redis.Conn) (map[string]string, error) {
	v, err := c.Do(ctx, "CLUSTER", "INFO")
	if err != nil {
		return nil, err
	}
	return redis.ParseInfo(v.Text()), nil
}

func roleName(info map[string]string) string {
	if info["role"] == "slave" {
		return "replica"
	}
	return "master"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// module is one entry of MODULE LIST.
type module struct {
	name string
	ver  int64
}

// parseModuleList reads a MODULE LIST reply: an array of [name, <n>, ver, <v>, ...]
// (maps in RESP3).
func parseModuleList(v resp.Value) []module {
	var out []module
	for _, e := range v.Elems {
		var m module
		for i := 0; i+1 < len(e.Elems); i += 2 {
			switch strings.ToLower(e.Elems[i].Text()) {
			case "name":
				m.name = e.Elems[i+1].Text()
			case "ver":
				m.ver = e.Elems[i+1].Int
			}
		}
		if m.name != "" {
			out = append(out, m)
		}
	}
	return out
}

// moduleList runs MODULE LIST on s. A server without modules support (Redis < 4.0) has
// no modules.
func moduleList(ctx context.Context, s *side) ([]module, error) {
	c, err := s.dialSeed(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	v, err := c.Do(ctx, "MODULE", "LIST")
	var re *resp.Error
	if errors.As(err, &re) && strings.Contains(re.Msg, "unknown command") {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseModuleList(v), nil
}

// compareModules reports source modules the target lacks (their values cannot be
// restored without them) or has in an older version.
func compareModules(src, tgt []module) Check {
	if len(src) == 0 {
		return Check{Result: Pass, Found: "no modules loaded on the source"}
	}
	have := make(map[string]int64, len(tgt))
	for _, m := range tgt {
		have[strings.ToLower(m.name)] = m.ver
	}
	var missing, older, ok []string
	for _, m := range src {
		tv, found := have[strings.ToLower(m.name)]
		switch {
		case !found:
			missing = append(missing, fmt.Sprintf("%s (version %d)", m.name, m.ver))
		case tv < m.ver:
			older = append(older, fmt.Sprintf("%s %d on the target < %d on the source", m.name, tv, m.ver))
		default:
			ok = append(ok, fmt.Sprintf("%s %d", m.name, m.ver))
		}
	}
	slices.Sort(missing)
	slices.Sort(older)
	var found []string
	if len(ok) > 0 {
		found = append(found, "on both sides: "+strings.Join(ok, ", "))
	}
	if len(older) > 0 {
		found = append(found, "older on the target: "+strings.Join(older, "; "))
	}
	if len(missing) > 0 {
		found = append(found, "loaded on the source but not on the target: "+strings.Join(missing, ", "))
		return Check{
			Result: Fail,
			Found:  strings.Join(found, "; "),
			Advice: "load the same modules on the target (loadmodule in its config, or MODULE LOAD), at the source's version or newer: their keys are stored in formats only the module reads, and their commands exist only with it",
		}
	}
	if len(older) > 0 {
		return Check{
			Result: Warn,
			Found:  strings.Join(found, "; "),
			Advice: "upgrade the modules on the target to at least the source's versions: an older module may not read the newer format of its values",
		}
	}
	return Check{Result: Pass, Found: strings.Join(found, "; ")}
}

// modules compares the modules loaded on both sides.
func (r *runner) modules(ctx context.Context) Check {
	src, err := moduleList(ctx, r.src)
	if err != nil {
		c := skipf("not checked: MODULE LIST on the source: %v", err)
		c.Advice = noPermAdvice(r.src, err, "module|list")
		return c
	}
	tgt, err := moduleList(ctx, r.tgt)
	if err != nil {
		if len(src) == 0 {
			return Check{Result: Pass, Found: "no modules loaded on the source"}
		}
		c := skipf("not checked: MODULE LIST on the target: %v", err)
		c.Advice = noPermAdvice(r.tgt, err, "module|list")
		return c
	}
	return compareModules(src, tgt)
}
