package command_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/ferrysync/ferry/internal/command"
)

// BenchmarkRoute is the cost the cluster router adds per command: finding the keys from
// the key specs and their slot.
func BenchmarkRoute(b *testing.B) {
	tab := recordedTable(b)
	cmds := [][][]byte{
		splitCmd("SET user:1000 some-value"),
		splitCmd("hset session:abcdef field value"),
		splitCmd("ZADD board 12 member"),
		splitCmd("MSET {u}a 1 {u}b 2"),
		splitCmd("XADD stream:" + strconv.Itoa(7) + " * f v"),
	}
	var keys []command.Key
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r, err := tab.Route(ctx, nil, cmds[i%len(cmds)], keys)
		if err != nil || r.Kind != command.OneSlot {
			b.Fatal(r.Kind, err)
		}
		keys = r.Keys[:0]
	}
}
