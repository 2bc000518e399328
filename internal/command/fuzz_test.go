package command_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/resp"
)

// The recorded replies in testdata are redis-server 7.0.15's own: the whole COMMAND
// reply, and COMMAND INFO of a sample of commands with every kind of key spec.
const (
	recordedCommand = "testdata/command-7.0.15.resp"
	recordedSample  = "testdata/command-info-sample-7.0.15.resp"
)

func readReply(tb testing.TB, data []byte) (resp.Value, error) {
	tb.Helper()
	r := resp.NewReader(bytes.NewReader(data), resp.ReaderOptions{BufferSize: 4096, MaxBulkLen: 1 << 20, MaxElements: 1 << 16})
	return r.ReadValue()
}

func recordedTable(tb testing.TB) *command.Table {
	tb.Helper()
	data, err := os.ReadFile(recordedCommand)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := readReply(tb, data)
	if err != nil {
		tb.Fatal(err)
	}
	tab, err := command.NewTable(v)
	if err != nil {
		tb.Fatal(err)
	}
	return tab
}

// TestRecordedTable parses the recorded COMMAND reply without a server and answers the
// curated examples that need no server from it.
func TestRecordedTable(t *testing.T) {
	tab := recordedTable(t)
	if tab.Len() < 200 || !tab.KeySpecs() {
		t.Fatalf("%d commands, key specs %v", tab.Len(), tab.KeySpecs())
	}
	answered := 0
	for _, tc := range curated {
		args := splitCmd(tc.args)
		keys, err := tab.Keys(context.Background(), nil, args, nil)
		if errors.Is(err, command.ErrNeedServer) {
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		answered++
		got := positions(keys)
		if len(got) != len(tc.keys) {
			t.Errorf("%s: key positions %v, want %v", tc.args, got, tc.keys)
			continue
		}
		for i := range got {
			if got[i] != tc.keys[i] {
				t.Errorf("%s: key positions %v, want %v", tc.args, got, tc.keys)
				break
			}
		}
	}
	if answered < len(curated)-10 {
		t.Errorf("only %d of %d curated examples answered without a server", answered, len(curated))
	}
	if c := tab.Command("function|load"); c == nil || c.Policy != command.PolicyAllShards {
		t.Errorf("function|load: %+v", c)
	}
}

// FuzzNewTable parses arbitrary bytes as a COMMAND reply. Whatever it accepts must
// answer key positions within the arguments for any command.
func FuzzNewTable(f *testing.F) {
	// The sample, not the whole recorded reply: mutating 90 KB inputs makes the fuzzer
	// crawl, and the sample has every kind of key spec.
	data, err := os.ReadFile(recordedSample)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("*1\r\n*6\r\n$3\r\nget\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n"))
	f.Add([]byte("*1\r\n*6\r\n$4\r\nmset\r\n:-3\r\n*1\r\n+movablekeys\r\n:1\r\n:-1\r\n:2\r\n"))
	probes := [][][]byte{
		splitCmd("X a b c d e f g h"),
		splitCmd("X 2 a b STORE d STREAMS k1 k2 0 0"),
		splitCmd("X -1 0 99999999999 KEYS"),
		splitCmd("X"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := readReply(t, data)
		if err != nil {
			return
		}
		tab, err := command.NewTable(v)
		if err != nil {
			var pe *command.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			return
		}
		for _, name := range tab.Names() {
			c := tab.Command(name)
			if c == nil {
				t.Fatalf("Names lists %q, Command does not find it", name)
			}
			for _, p := range probes {
				args := append([][]byte{[]byte(name)}, p[1:]...)
				keys, ok := c.KeysFromSpecs(args, nil)
				if !ok {
					continue
				}
				for _, k := range keys {
					if k.Pos < 1 || k.Pos >= len(args) {
						t.Fatalf("%s: key position %d outside %d arguments", name, k.Pos, len(args))
					}
				}
			}
		}
	})
}

// FuzzKeys runs arbitrary argument lists through the recorded table: positions stay
// within the arguments, and a split covers every key unit exactly once.
func FuzzKeys(f *testing.F) {
	for _, tc := range curated {
		f.Add(tc.args)
	}
	f.Add("MSET a 1 b 2 {x}c 3 {x}d 4")
	f.Add("ZUNIONSTORE d -1 a")
	f.Add("XREAD STREAMS a b c 0 0 0")
	f.Add("GEORADIUS s 0 0 1 km STORE")
	f.Add("EVAL s 99999999999999999999 a")
	tab := recordedTable(f)
	f.Fuzz(func(t *testing.T, line string) {
		if len(line) > 4096 {
			return
		}
		args := splitCmd(line)
		if len(args) == 0 {
			return
		}
		r, err := tab.Route(context.Background(), nil, args, nil)
		if err != nil {
			if !errors.Is(err, command.ErrNeedServer) && !errors.As(err, new(*command.UnknownCommandError)) &&
				!strings.Contains(err.Error(), "needs a subcommand") {
				t.Fatalf("%q: unexpected error %v", line, err)
			}
			return
		}
		for _, k := range r.Keys {
			if k.Pos < 1 || k.Pos >= len(args) {
				t.Fatalf("%q: key position %d outside %d arguments", line, k.Pos, len(args))
			}
		}
		if r.Kind != command.Split {
			return
		}
		units := 0
		err = command.SplitBySlot(r, args, nil, func(slot uint16, part [][]byte) error {
			units += len(part) - 1
			return nil
		})
		if err != nil || units != len(args)-1 {
			t.Fatalf("%q: the parts hold %d arguments, the command %d (%v)", line, units, len(args)-1, err)
		}
	})
}

func TestRecordedFilesAreReplies(t *testing.T) {
	for _, p := range []string{recordedCommand, recordedSample} {
		data, err := os.ReadFile(filepath.Clean(p))
		if err != nil {
			t.Fatal(err)
		}
		r := resp.NewReader(bytes.NewReader(data), resp.ReaderOptions{MaxBulkLen: 1 << 20, MaxElements: 1 << 16})
		if _, err := r.ReadValue(); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if r.Offset() != int64(len(data)) {
			t.Fatalf("%s: %d bytes after the reply", p, int64(len(data))-r.Offset())
		}
	}
}
