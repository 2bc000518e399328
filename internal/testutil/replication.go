package testutil

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// replicationWaitTimeout bounds the waits below when the caller's context has no deadline.
	replicationWaitTimeout = 60 * time.Second
	// replicationPoll is the interval at which replication state is re-read. Replicas ACK once
	// a second, so a wait for acknowledged offsets typically takes up to a second anyway.
	replicationPoll = 10 * time.Millisecond
)

// ReplicaInfo is one "slaveN:" line of a master's INFO replication: what the master knows about
// a replica (a Redis replica, or Ferry attached as one).
type ReplicaInfo struct {
	IP     string
	Port   int    // the replica's listening port, as it announced with REPLCONF listening-port
	State  string // wait_bgsave, send_bulk, online
	Offset int64  // the offset the replica last acknowledged
	Lag    int64  // seconds since the replica's last ACK
}

// ReplicationState is a master's view of its replication: its offset and its replicas.
type ReplicationState struct {
	Role         string
	MasterOffset int64 // master_repl_offset
	Replicas     []ReplicaInfo
}

// Replication reads INFO replication from s.
func Replication(ctx context.Context, s *Server) (ReplicationState, error) {
	info, err := s.Info(ctx, "replication")
	if err != nil {
		return ReplicationState{}, err
	}
	return parseReplication(info)
}

func parseReplication(info map[string]string) (ReplicationState, error) {
	st := ReplicationState{Role: info["role"]}
	off, err := strconv.ParseInt(info["master_repl_offset"], 10, 64)
	if err != nil {
		return st, fmt.Errorf("INFO replication master_repl_offset %q: %w", info["master_repl_offset"], err)
	}
	st.MasterOffset = off
	n, _ := strconv.Atoi(info["connected_slaves"])
	for i := range n {
		line, ok := info["slave"+strconv.Itoa(i)]
		if !ok {
			// A replica disconnected between the count and the lines: not an error.
			continue
		}
		r, err := parseReplicaLine(line)
		if err != nil {
			return st, fmt.Errorf("INFO replication slave%d: %w", i, err)
		}
		st.Replicas = append(st.Replicas, r)
	}
	return st, nil
}

// parseReplicaLine parses "ip=127.0.0.1,port=6380,state=online,offset=123,lag=0".
func parseReplicaLine(line string) (ReplicaInfo, error) {
	var r ReplicaInfo
	for _, kv := range strings.Split(line, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "ip":
			r.IP = v
		case "port":
			r.Port, err = strconv.Atoi(v)
		case "state":
			r.State = v
		case "offset":
			r.Offset, err = strconv.ParseInt(v, 10, 64)
		case "lag":
			r.Lag, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return r, fmt.Errorf("%q: field %s: %w", line, k, err)
		}
	}
	return r, nil
}

// WaitReplicasCaughtUp waits until src has at least one replica, every replica is online, and
// every replica has acknowledged src's master_repl_offset: everything written to src before the
// call has reached them (and, for Ferry, been applied: it acknowledges what it applied). On
// timeout the error names each replica's offset and the master's.
func WaitReplicasCaughtUp(ctx context.Context, src *Server) error {
	ctx, cancel := withDefaultTimeout(ctx, replicationWaitTimeout)
	defer cancel()
	t := time.NewTicker(replicationPoll)
	defer t.Stop()
	var last ReplicationState
	for {
		st, err := Replication(ctx, src)
		if err == nil {
			last = st
			if caughtUp(st) {
				return nil
			}
		} else if ctx.Err() == nil {
			return fmt.Errorf("wait for replicas of %s: %w", src, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas of %s not caught up: %s: %w", src, describeReplication(last), ctx.Err())
		case <-t.C:
		}
	}
}

func caughtUp(st ReplicationState) bool {
	if len(st.Replicas) == 0 {
		return false
	}
	for _, r := range st.Replicas {
		if r.State != "online" || r.Offset != st.MasterOffset {
			return false
		}
	}
	return true
}

func describeReplication(st ReplicationState) string {
	if len(st.Replicas) == 0 {
		return fmt.Sprintf("no replica connected (master_repl_offset %d)", st.MasterOffset)
	}
	var parts []string
	for _, r := range st.Replicas {
		parts = append(parts, fmt.Sprintf("replica %s:%d state %s acknowledged offset %d (%d behind)",
			r.IP, r.Port, r.State, r.Offset, st.MasterOffset-r.Offset))
	}
	return fmt.Sprintf("master_repl_offset %d; %s", st.MasterOffset, strings.Join(parts, "; "))
}

// WaitSynced waits until replica s has a live link to its master and no sync in progress.
func WaitSynced(ctx context.Context, s *Server) error {
	ctx, cancel := withDefaultTimeout(ctx, replicationWaitTimeout)
	defer cancel()
	t := time.NewTicker(replicationPoll)
	defer t.Stop()
	var last map[string]string
	for {
		info, err := s.Info(ctx, "replication")
		if err == nil {
			last = info
			if info["role"] == "slave" && info["master_link_status"] == "up" && info["master_sync_in_progress"] == "0" {
				return nil
			}
		} else if ctx.Err() == nil {
			return fmt.Errorf("wait for %s to sync: %w", s, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not synced (role:%s master_link_status:%s master_sync_in_progress:%s): %w",
				s, last["role"], last["master_link_status"], last["master_sync_in_progress"], ctx.Err())
		case <-t.C:
		}
	}
}

// ReplicaOf makes s a replica of master (REPLICAOF) and waits until its initial sync is done.
func (s *Server) ReplicaOf(tb testing.TB, master *Server) {
	tb.Helper()
	s.Do(tb, "REPLICAOF", "127.0.0.1", strconv.Itoa(master.Port()))
	ctx, cancel := context.WithTimeout(context.Background(), replicationWaitTimeout)
	defer cancel()
	if err := WaitSynced(ctx, s); err != nil {
		tb.Fatal(err)
	}
}
