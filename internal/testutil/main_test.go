package testutil

import (
	"testing"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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
