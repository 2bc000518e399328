package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
)

// dataset is a reproducible fill of the source: the same flags give the same keys and
// values (a fixed-seed generator), so runs and machines compare.
type dataset struct {
	name string
	desc string
	keys int64 // keys it creates
	fill func(ctx context.Context, p *pipe, rng *rand.Rand) error
	// strings: the dataset is plain strings of valueSize bytes, which redis-benchmark
	// can write too (its SET ceiling).
	strings   bool
	valueSize int
}

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// randBytes fills b with letters: incompressible enough that LZF leaves them raw, as
// real values mostly are.
func randBytes(rng *rand.Rand, b []byte) []byte {
	for i := 0; i < len(b); {
		v := rng.Uint64()
		for j := 0; j < 10 && i < len(b); j++ {
			b[i] = alphabet[v&63]
			v >>= 6
			i++
		}
	}
	return b
}

func scaled(n int64, scale float64) int64 { return max(1, int64(float64(n)*scale)) }

// expiry is a far-future absolute expiry for every tenth key, so RESTORE … ABSTTL and
// PEXPIREAT are exercised without keys expiring during the bench.
const farFutureMs = "4102444800000" // 2100-01-01

// stringsDataset: n strings of size bytes ("a" is 2 M × 100 B at scale 1).
func stringsDataset(name string, n int64, size int) dataset {
	return dataset{
		name: name, strings: true, valueSize: size, keys: n,
		desc: fmt.Sprintf("%s strings of %d B", count(n), size),
		fill: func(ctx context.Context, p *pipe, rng *rand.Rand) error {
			val := make([]byte, size)
			key := make([]byte, 0, 32)
			set, px := []byte("SET"), []byte("PXAT")
			exp := []byte(farFutureMs)
			for i := range n {
				key = strconv.AppendInt(append(key[:0], "str:"...), i, 10)
				randBytes(rng, val)
				var err error
				if i%10 == 0 {
					err = p.send(set, key, val, px, exp)
				} else {
					err = p.send(set, key, val)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// collectionsDataset: n each of hashes, lists, sets and zsets with elems elements, and
// streams streams ("b" is 50 k each with 50 elements plus 1 k streams at scale 1).
func collectionsDataset(n int64, elems int, streams int64) dataset {
	const streamEntries = 100
	return dataset{
		name: "b", keys: 4*n + streams,
		desc: fmt.Sprintf("%s each of hashes, lists, sets, zsets × %d elements + %s streams × %d entries",
			count(n), elems, count(streams), streamEntries),
		fill: func(ctx context.Context, p *pipe, rng *rand.Rand) error {
			el := func(min int) string {
				return string(randBytes(rng, make([]byte, min+rng.IntN(12))))
			}
			for i := range n {
				id := strconv.FormatInt(i, 10)
				h := []string{"HSET", "hash:" + id}
				l := []string{"RPUSH", "list:" + id}
				s := []string{"SADD", "set:" + id}
				z := []string{"ZADD", "zset:" + id}
				for j := range elems {
					h = append(h, "field:"+strconv.Itoa(j), el(6))
					l = append(l, el(8))
					s = append(s, el(8))
					z = append(z, strconv.FormatFloat(rng.Float64()*1000, 'g', -1, 64), el(8))
				}
				for _, c := range [][]string{h, l, s, z} {
					if err := p.sendStrings(c...); err != nil {
						return err
					}
				}
				if i%10 == 0 {
					for _, k := range []string{"hash:", "list:", "set:", "zset:"} {
						if err := p.sendStrings("PEXPIREAT", k+id, farFutureMs); err != nil {
							return err
						}
					}
				}
			}
			for i := range streams {
				key := "stream:" + strconv.FormatInt(i, 10)
				for j := range streamEntries {
					// Explicit IDs keep the dataset reproducible.
					if err := p.sendStrings("XADD", key, strconv.Itoa(1_700_000_000_000+j)+"-1",
						"sensor", el(4), "value", strconv.Itoa(rng.IntN(100000))); err != nil {
						return err
					}
				}
				if err := p.sendStrings("XGROUP", "CREATE", key, "workers", "0"); err != nil {
					return err
				}
				if err := p.sendStrings("XREADGROUP", "GROUP", "workers", "w1", "COUNT", "10", "STREAMS", key, ">"); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// bigKeysDataset: one hash, list, set and zset of elems elements each ("c"). They are
// written in batches of 1000 elements, as any client would.
func bigKeysDataset(elems int64) dataset {
	return dataset{
		name: "c", keys: 4,
		desc: fmt.Sprintf("4 big keys (hash, list, set, zset) × %s elements", count(elems)),
		fill: func(ctx context.Context, p *pipe, rng *rand.Rand) error {
			const batch = 1000
			buf := make([]byte, 16)
			for _, kind := range []string{"hash", "list", "set", "zset"} {
				key := "big:" + kind
				for start := int64(0); start < elems; start += batch {
					var c []string
					switch kind {
					case "hash":
						c = []string{"HSET", key}
					case "list":
						c = []string{"RPUSH", key}
					case "set":
						c = []string{"SADD", key}
					case "zset":
						c = []string{"ZADD", key}
					}
					for j := start; j < min(start+batch, elems); j++ {
						m := "m:" + strconv.FormatInt(j, 10) + ":" + string(randBytes(rng, buf[:6]))
						switch kind {
						case "hash":
							c = append(c, m, string(randBytes(rng, buf[:10])))
						case "zset":
							c = append(c, strconv.FormatFloat(rng.Float64()*1e6, 'g', -1, 64), m)
						default:
							c = append(c, m)
						}
					}
					if err := p.sendStrings(c...); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
}

// count prints 2000000 as "2 M" and 50000 as "50 k".
func count(n int64) string {
	switch {
	case n >= 1_000_000 && n%100_000 == 0:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + " M"
	case n >= 1000 && n%100 == 0:
		return strconv.FormatFloat(float64(n)/1e3, 'f', -1, 64) + " k"
	}
	return strconv.FormatInt(n, 10)
}

// load fills s with d, reproducibly (seed), and returns when the server has it all.
func load(ctx context.Context, s *server, d dataset, seed uint64) error {
	p, err := dialPipe(s.addr())
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	if err := d.fill(ctx, p, rng); err != nil {
		_ = p.finish(ctx)
		return fmt.Errorf("load dataset %s: %w", d.name, err)
	}
	if err := p.finish(ctx); err != nil {
		return fmt.Errorf("load dataset %s: %w", d.name, err)
	}
	return nil
}
