package testutil

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(envOrphanHelper) != "" {
		orphanHelper()
	}
	goleak.VerifyTestMain(m)
}

// envOrphanHelper makes the test binary act as a test process that dies abruptly, for
// TestServerDiesWithTestBinary.
const envOrphanHelper = "FERRY_TESTUTIL_ORPHAN_HELPER"

// orphanHelper starts a server, prints its pid and exits without any cleanup, as a crashed or
// killed go test would.
func orphanHelper() {
	dir, err := os.MkdirTemp("", "ferry-orphan")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	path, err := RedisServerPath()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	s := &Server{path: path, dir: dir, logPath: filepath.Join(dir, "redis.log"), stdioPath: filepath.Join(dir, "stdio.log")}
	if err := s.launch(false); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if err := s.finishStart(context.Background(), false); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("pid=%d dir=%s\n", s.Pid(), dir)
	os.Exit(0)
}

func parseInfoText(b []byte) map[string]string { return redis.ParseInfo(string(b)) }

// respList wraps a RESP array of bulk strings for table tests.
type respList struct{ v resp.Value }

func mkList(elems ...string) respList {
	v := resp.Value{Kind: resp.KindArray}
	for _, e := range elems {
		v.Elems = append(v.Elems, resp.Value{Kind: resp.KindBulkString, Str: []byte(e)})
	}
	return respList{v}
}

func slotOf(key string) uint16 { return command.SlotString(key) }
