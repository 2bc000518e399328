package rdb_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/ferrysync/ferry/internal/crc"
	"github.com/ferrysync/ferry/internal/rdb"
)

// exampleRDB is a tiny RDB v11 file: a string with an expiry and a listpack set.
func exampleRDB() []byte {
	b := []byte("REDIS0011")
	b = append(b, 0xFC) // EXPIRETIME_MS
	b = binary.LittleEndian.AppendUint64(b, 1900000000000)
	b = append(b, 0, 1, 'k', 5, 'h', 'e', 'l', 'l', 'o') // STRING "k" = "hello"
	lp := []byte{0, 0, 0, 0, 2, 0, 0x81, 'a', 2, 0x81, 'b', 2, 0xFF}
	binary.LittleEndian.PutUint32(lp, uint32(len(lp)))
	b = append(b, 20, 1, 's', byte(len(lp))) // SET_LISTPACK "s"
	b = append(b, lp...)
	b = append(b, 0xFF)
	return binary.LittleEndian.AppendUint64(b, crc.CRC64(0, b))
}

// The per-key decision of a sync: a RESTORE payload when the destination can load the
// value's type and the value is small enough, the command path otherwise.
func Example() {
	dst := rdb.TargetFor("redis", "7.0.15") // RDB v10: no listpack sets
	const threshold = 4 << 20
	var payload rdb.Payload
	commands := rdb.NewCommandWriter(rdb.CommandOptions{Target: dst})
	send := func(args [][]byte) error { fmt.Printf("%q\n", args); return nil }

	d := rdb.NewDecoder(bytes.NewReader(exampleRDB()), rdb.Options{})
	for {
		e, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if e.Record != rdb.RecordKey {
			continue
		}
		if v, err := rdb.PayloadVersion(e.Flavor, e.Type, dst); err == nil {
			raw, ok, err := d.Raw(threshold)
			if err != nil {
				log.Fatal(err)
			}
			if ok {
				args := payload.RestoreArgs(e.Key, payload.Build(e.Type, raw, v), e.ExpireAt, e.Idle, e.Freq)
				fmt.Printf("RESTORE %s %s <%d-byte payload, v%d> %s\n", args[1], args[2], len(args[3]), v, args[4:])
				continue
			}
		} else if !errors.Is(err, rdb.ErrNeedsCommands) {
			log.Fatal(err)
		}
		if err := commands.WriteValue(d, send); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// RESTORE k 1900000000000 <17-byte payload, v10> [REPLACE ABSTTL]
	// ["DEL" "s"]
	// ["SADD" "s" "a" "b"]
}
