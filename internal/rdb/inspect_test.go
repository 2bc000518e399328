package rdb

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestInspect(t *testing.T) {
	data := readFixture(t, "replicator/listpack-bug.rdb")
	rep, err := Inspect(bytes.NewReader(data), InspectOptions{TopKeys: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Version != 10 || rep.Keys != 237 || rep.Bytes != int64(len(data)) || len(rep.DBs) != 3 ||
		rep.DBs[0].Keys != 227 || rep.DBs[1].Keys != 9 || rep.DBs[2].Keys != 1 {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Functions) != 3 || len(rep.LargestKeys) != 3 || rep.LargestKeys[0].Bytes < rep.LargestKeys[2].Bytes {
		t.Fatalf("functions %+v, largest %+v", rep.Functions, rep.LargestKeys)
	}
	if got := rep.DBs[0].Types["hash"].Encodings["HASH_LISTPACK"]; got == 0 {
		t.Fatalf("db0 hash encodings %+v", rep.DBs[0].Types["hash"])
	}
	var sum int64
	for _, db := range rep.DBs {
		for _, tc := range db.Types {
			sum += tc.Keys
		}
	}
	if sum != rep.Keys {
		t.Fatalf("type counts add up to %d, keys %d", sum, rep.Keys)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"REDIS0010", "keys", "237", "function", "largest keys", "HASH_LISTPACK"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}

	// Expiry and modules.
	rep, err = Inspect(bytes.NewReader(readFixture(t, "replicator/dumpV8.rdb")), InspectOptions{Now: time.Date(2017, 2, 10, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Expiry.WithTTL != 2 || rep.Expiry.Expired != 1 || rep.Keys != 92499 {
		t.Fatalf("expiry %+v keys %d", rep.Expiry, rep.Keys)
	}
	rep, err = Inspect(bytes.NewReader(readFixture(t, "rdbtools/redis_40_with_module.rdb")), InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Modules) != 1 || rep.Modules[0].Name != "ReJSON-RL" || rep.Modules[0].Keys != 1 {
		t.Fatalf("modules %+v", rep.Modules)
	}
	rep, err = Inspect(bytes.NewReader(readFixture(t, "valkey/corrupt_empty_keys.rdb")), InspectOptions{})
	if err != nil || rep.EmptyKeysSkipped != 9 || rep.Keys != 0 {
		t.Fatalf("empty keys: %+v, %v", rep, err)
	}
}
