package command

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferrysync/ferry/internal/resp"
)

// Limits on what a COMMAND reply may hold. The reply comes from a server, but a proxy or
// a broken server must not make the parser build something unreasonable.
const (
	maxCommands    = 16384 // commands and subcommands together
	maxKeySpecs    = 64    // per command
	maxNameLen     = 256
	maxSubcommands = 1024 // per container command
)

// KeyFlags are the flags of a Redis 7 key spec (COMMAND INFO, "flags" of a key spec).
type KeyFlags uint16

// The key spec flags, named as Redis's CMD_KEY_* (shown lower- or upper-case by COMMAND).
const (
	KeyRO            KeyFlags = 1 << iota // RO: the key is read, never written
	KeyRW                                 // RW: read and modified
	KeyOW                                 // OW: overwritten, its old value not read
	KeyRM                                 // RM: deleted
	KeyAccess                             // access: the user's data is returned
	KeyUpdate                             // update: the value is updated
	KeyInsert                             // insert: data is added, never overwritten
	KeyDelete                             // delete: data is removed
	KeyNotKey                             // not_key: looks like a key but is not one (skipped)
	KeyIncomplete                         // incomplete: the spec may miss keys; ask the server
	KeyVariableFlags                      // variable_flags: the flags depend on the arguments
)

var keyFlagNames = map[string]KeyFlags{
	"ro": KeyRO, "rw": KeyRW, "ow": KeyOW, "rm": KeyRM,
	"access": KeyAccess, "update": KeyUpdate, "insert": KeyInsert, "delete": KeyDelete,
	"not_key": KeyNotKey, "incomplete": KeyIncomplete, "variable_flags": KeyVariableFlags,
}

// ReadOnly reports whether a key with these flags is certainly not modified by the
// command. Keys with unknown flags (legacy tables, COMMAND GETKEYS) count as modified.
func (f KeyFlags) ReadOnly() bool {
	return f&KeyRO != 0 && f&(KeyRW|KeyOW|KeyRM|KeyVariableFlags) == 0
}

// CommandFlags are the command flags a sync cares about (COMMAND, third element).
type CommandFlags uint16

// Command flags, as Redis's CMD_* names them.
const (
	FlagWrite       CommandFlags = 1 << iota // write: may modify the dataset
	FlagReadOnly                             // readonly
	FlagMovableKeys                          // movablekeys: key positions depend on the arguments
	FlagPubSub                               // pubsub
	FlagNoScript                             // noscript
	FlagBlocking                             // blocking
	FlagAdmin                                // admin
)

var commandFlagNames = map[string]CommandFlags{
	"write": FlagWrite, "readonly": FlagReadOnly, "movablekeys": FlagMovableKeys,
	"pubsub": FlagPubSub, "noscript": FlagNoScript, "blocking": FlagBlocking, "admin": FlagAdmin,
}

// RequestPolicy is a command's "request_policy" tip (Redis 7): how a cluster client
// sends it.
type RequestPolicy uint8

const (
	PolicyDefault    RequestPolicy = iota // no tip: by the slot of its keys
	PolicyAllNodes                        // request_policy:all_nodes (SCRIPT LOAD, SCRIPT FLUSH)
	PolicyAllShards                       // request_policy:all_shards (FLUSHALL, FUNCTION LOAD)
	PolicyMultiShard                      // request_policy:multi_shard (DEL, MSET): splits per slot
	PolicySpecial                         // request_policy:special
)

var policyNames = map[string]RequestPolicy{
	"all_nodes": PolicyAllNodes, "all_shards": PolicyAllShards,
	"multi_shard": PolicyMultiShard, "special": PolicySpecial,
}

// BeginSearch is where a key spec starts looking for its keys.
type BeginSearch struct {
	Kind      SearchKind
	Index     int    // SearchIndex: the argument index of the first key
	Keyword   string // SearchKeyword: the keys follow this argument (case-insensitive)
	StartFrom int    // SearchKeyword: where the search starts; negative counts from the end, backwards
}

// SearchKind is the type of a begin_search or find_keys clause.
type SearchKind uint8

const (
	SearchUnknown SearchKind = iota // "unknown": the spec cannot say; ask the server
	SearchIndex                     // begin_search "index"
	SearchKeyword                   // begin_search "keyword"
	SearchRange                     // find_keys "range"
	SearchKeynum                    // find_keys "keynum"
)

// FindKeys says which arguments after the begin_search position are keys.
type FindKeys struct {
	Kind SearchKind
	// SearchRange: the last key relative to the first (>= 0), or counted from the end
	// (-1 is the last argument); with Limit > 0 and LastKey -1, 1/Limit of the remaining
	// arguments are keys (XREAD STREAMS k1 k2 id1 id2: Limit 2).
	LastKey, KeyStep, Limit int
	// SearchKeynum: the argument at KeyNumIdx (relative to the begin position) holds the
	// number of keys, which start at FirstKey (relative too), every KeyStep arguments.
	KeyNumIdx, FirstKey int
}

// KeySpec is one Redis 7 key specification.
type KeySpec struct {
	Flags KeyFlags
	Begin BeginSearch
	Find  FindKeys
}

// Command is what a server says about one command or subcommand.
type Command struct {
	Name  string // lower case; "function|load" for a subcommand
	Arity int    // negative: at least -Arity arguments, the name included
	Flags CommandFlags
	// First, Last and Step are the legacy key positions (servers before 7.0, and the
	// fallback for commands without key specs): Last < 0 counts from the end.
	First, Last, Step int
	Specs             []KeySpec // Redis 7 key specs; nil on older servers
	Policy            RequestPolicy
	// Sub holds a container's subcommands by their lower-case name ("load" for
	// FUNCTION LOAD); nil for plain commands.
	Sub map[string]*Command
}

// HasKeys reports whether the command can have key arguments at all.
func (c *Command) HasKeys() bool {
	if c.Flags&FlagMovableKeys != 0 || c.First > 0 {
		return true
	}
	for _, s := range c.Specs {
		if s.Flags&KeyNotKey == 0 {
			return true
		}
	}
	return false
}

// ParseError says what is wrong with a COMMAND reply.
type ParseError struct {
	Command string // the entry being parsed, when known
	Msg     string
}

func (e *ParseError) Error() string {
	if e.Command == "" {
		return "command table: " + e.Msg
	}
	return fmt.Sprintf("command table: %s: %s", e.Command, e.Msg)
}

// parseCommand parses one entry of a COMMAND / COMMAND INFO reply:
//
//	name, arity, flags, first key, last key, step
//	[, ACL categories (6.0+) [, tips, key specs, subcommands (7.0+)]]
//
// count is the number of entries parsed so far (subcommands included), to bound them.
func parseCommand(v resp.Value, count *int, depth int) (*Command, error) {
	if v.Null {
		return nil, nil // COMMAND INFO of an unknown name
	}
	if !isArray(v) || len(v.Elems) < 6 {
		return nil, &ParseError{Msg: fmt.Sprintf("an entry is not an array of at least 6 elements (%s)", describe(v))}
	}
	*count++
	if *count > maxCommands {
		return nil, &ParseError{Msg: fmt.Sprintf("more than %d commands", maxCommands)}
	}
	e := v.Elems
	name, ok := str(e[0])
	if !ok || name == "" || len(name) > maxNameLen {
		return nil, &ParseError{Msg: fmt.Sprintf("bad command name (%s)", describe(e[0]))}
	}
	c := &Command{Name: strings.ToLower(name)}
	if depth == 0 && strings.Contains(c.Name, "|") {
		return nil, &ParseError{Msg: fmt.Sprintf("command name %q has a '|', which only subcommands have", c.Name)}
	}
	bad := func(what string, x resp.Value) error {
		return &ParseError{Command: c.Name, Msg: fmt.Sprintf("bad %s (%s)", what, describe(x))}
	}
	var err error
	if c.Arity, err = intField(e[1]); err != nil {
		return nil, bad("arity", e[1])
	}
	if !isArray(e[2]) {
		return nil, bad("flags", e[2])
	}
	for _, f := range e[2].Elems {
		s, ok := str(f)
		if !ok {
			return nil, bad("flag", f)
		}
		c.Flags |= commandFlagNames[strings.ToLower(s)]
	}
	if c.First, err = intField(e[3]); err != nil || c.First < 0 {
		return nil, bad("first key", e[3])
	}
	if c.Last, err = intField(e[4]); err != nil {
		return nil, bad("last key", e[4])
	}
	if c.Step, err = intField(e[5]); err != nil || c.Step < 0 || (c.First > 0 && c.Step == 0) {
		return nil, bad("key step", e[5])
	}
	if len(e) > 7 {
		if !isArray(e[7]) {
			return nil, bad("tips", e[7])
		}
		for _, t := range e[7].Elems {
			s, ok := str(t)
			if !ok {
				return nil, bad("tip", t)
			}
			if p, ok := strings.CutPrefix(strings.ToLower(s), "request_policy:"); ok {
				c.Policy = policyNames[p]
			}
		}
	}
	if len(e) > 8 {
		if !isArray(e[8]) || len(e[8].Elems) > maxKeySpecs {
			return nil, bad("key specs", e[8])
		}
		c.Specs = make([]KeySpec, 0, len(e[8].Elems))
		for _, sv := range e[8].Elems {
			ks, err := parseKeySpec(sv)
			if err != nil {
				return nil, &ParseError{Command: c.Name, Msg: "key spec: " + err.Error()}
			}
			c.Specs = append(c.Specs, ks)
		}
	}
	if len(e) > 9 && !e[9].Null {
		// Subcommands have an empty list of their own; nothing nests deeper.
		if !isArray(e[9]) || len(e[9].Elems) > maxSubcommands || (depth > 0 && len(e[9].Elems) > 0) {
			return nil, bad("subcommands", e[9])
		}
		for _, sv := range e[9].Elems {
			sub, err := parseCommand(sv, count, depth+1)
			if err != nil {
				return nil, err
			}
			if sub == nil {
				continue
			}
			parent, short, ok := strings.Cut(sub.Name, "|")
			if !ok || short == "" || parent != c.Name || strings.Contains(short, "|") {
				return nil, &ParseError{Command: c.Name, Msg: fmt.Sprintf("subcommand %q is not named %s|<name>", sub.Name, c.Name)}
			}
			if c.Sub == nil {
				c.Sub = make(map[string]*Command, len(e[9].Elems))
			}
			c.Sub[short] = sub
		}
	}
	return c, nil
}

// parseKeySpec parses one key spec, a map (RESP3) or flat key/value array (RESP2):
//
//	flags [..], begin_search {type, spec {index | keyword, startfrom}},
//	find_keys {type, spec {lastkey, keystep, limit | keynumidx, firstkey, keystep}}, [notes]
func parseKeySpec(v resp.Value) (KeySpec, error) {
	var ks KeySpec
	m, err := fields(v)
	if err != nil {
		return ks, err
	}
	if f, ok := m["flags"]; ok {
		if !isArray(f) {
			return ks, errors.New("flags is not an array")
		}
		for _, x := range f.Elems {
			s, ok := str(x)
			if !ok {
				return ks, errors.New("a flag is not a string")
			}
			ks.Flags |= keyFlagNames[strings.ToLower(s)]
		}
	}
	bs, ok := m["begin_search"]
	if !ok {
		return ks, errors.New("no begin_search")
	}
	kind, spec, err := typedSpec(bs)
	if err != nil {
		return ks, fmt.Errorf("begin_search: %w", err)
	}
	switch kind {
	case "index":
		ks.Begin.Kind = SearchIndex
		if ks.Begin.Index, err = intOf(spec, "index"); err != nil {
			return ks, fmt.Errorf("begin_search: %w", err)
		}
		if ks.Begin.Index < 0 {
			return ks, fmt.Errorf("begin_search: negative index %d", ks.Begin.Index)
		}
	case "keyword":
		ks.Begin.Kind = SearchKeyword
		var ok bool
		if ks.Begin.Keyword, ok = str(spec["keyword"]); !ok || ks.Begin.Keyword == "" || len(ks.Begin.Keyword) > maxNameLen {
			return ks, errors.New("begin_search: bad keyword")
		}
		if ks.Begin.StartFrom, err = intOf(spec, "startfrom"); err != nil {
			return ks, fmt.Errorf("begin_search: %w", err)
		}
	default:
		ks.Begin.Kind = SearchUnknown
	}
	fk, ok := m["find_keys"]
	if !ok {
		return ks, errors.New("no find_keys")
	}
	if kind, spec, err = typedSpec(fk); err != nil {
		return ks, fmt.Errorf("find_keys: %w", err)
	}
	switch kind {
	case "range":
		ks.Find.Kind = SearchRange
		if ks.Find.LastKey, err = intOf(spec, "lastkey"); err == nil {
			if ks.Find.KeyStep, err = intOf(spec, "keystep"); err == nil {
				ks.Find.Limit, err = intOf(spec, "limit")
			}
		}
		if err == nil && (ks.Find.KeyStep < 1 || ks.Find.Limit < 0 || (ks.Find.Limit > 0 && ks.Find.LastKey != -1)) {
			err = fmt.Errorf("range lastkey %d keystep %d limit %d is not valid", ks.Find.LastKey, ks.Find.KeyStep, ks.Find.Limit)
		}
	case "keynum":
		ks.Find.Kind = SearchKeynum
		if ks.Find.KeyNumIdx, err = intOf(spec, "keynumidx"); err == nil {
			if ks.Find.FirstKey, err = intOf(spec, "firstkey"); err == nil {
				ks.Find.KeyStep, err = intOf(spec, "keystep")
			}
		}
		if err == nil && (ks.Find.KeyStep < 1 || ks.Find.KeyNumIdx < 0 || ks.Find.FirstKey < 0) {
			err = fmt.Errorf("keynum keynumidx %d firstkey %d keystep %d is not valid", ks.Find.KeyNumIdx, ks.Find.FirstKey, ks.Find.KeyStep)
		}
	default:
		ks.Find.Kind = SearchUnknown
	}
	if err != nil {
		return ks, fmt.Errorf("find_keys: %w", err)
	}
	return ks, nil
}

// typedSpec reads {type: <name>, spec: {...}}.
func typedSpec(v resp.Value) (string, map[string]resp.Value, error) {
	m, err := fields(v)
	if err != nil {
		return "", nil, err
	}
	t, ok := str(m["type"])
	if !ok {
		return "", nil, errors.New("no type")
	}
	spec := map[string]resp.Value{}
	if s, ok := m["spec"]; ok && !s.Null {
		if spec, err = fields(s); err != nil {
			return "", nil, fmt.Errorf("spec: %w", err)
		}
	}
	return strings.ToLower(t), spec, nil
}

// fields reads a RESP3 map or a RESP2 array of alternating names and values.
func fields(v resp.Value) (map[string]resp.Value, error) {
	if (v.Kind != resp.KindMap && !isArray(v)) || len(v.Elems)%2 != 0 {
		return nil, fmt.Errorf("not a map (%s)", describe(v))
	}
	m := make(map[string]resp.Value, len(v.Elems)/2)
	for i := 0; i < len(v.Elems); i += 2 {
		k, ok := str(v.Elems[i])
		if !ok {
			return nil, fmt.Errorf("a field name is not a string (%s)", describe(v.Elems[i]))
		}
		m[strings.ToLower(k)] = v.Elems[i+1]
	}
	return m, nil
}

func intOf(m map[string]resp.Value, name string) (int, error) {
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("no %s", name)
	}
	n, err := intField(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// maxPosition bounds positions and counts in specs: no command has a million arguments
// before its keys, and the bound keeps arithmetic on them far from overflowing.
const maxPosition = 1 << 20

func intField(v resp.Value) (int, error) {
	if v.Kind != resp.KindInteger || v.Int < -maxPosition || v.Int > maxPosition {
		return 0, fmt.Errorf("not a small integer (%s)", describe(v))
	}
	return int(v.Int), nil
}

func isArray(v resp.Value) bool {
	return (v.Kind == resp.KindArray || v.Kind == resp.KindSet) && !v.Null
}

func str(v resp.Value) (string, bool) {
	switch v.Kind {
	case resp.KindSimpleString, resp.KindBulkString, resp.KindVerbatim:
		if v.Null {
			return "", false
		}
		return v.Text(), true
	}
	return "", false
}

// describe names a value's type for an error, never its content beyond a few bytes.
func describe(v resp.Value) string {
	switch {
	case v.Null:
		return "null"
	case v.Kind == resp.KindInteger:
		return fmt.Sprintf("integer %d", v.Int)
	case isArray(v) || v.Kind == resp.KindMap:
		return fmt.Sprintf("%s of %d elements", kindName(v.Kind), len(v.Elems))
	}
	s := v.Text()
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return fmt.Sprintf("%s %q", kindName(v.Kind), s)
}

func kindName(k resp.Kind) string {
	switch k {
	case resp.KindArray:
		return "array"
	case resp.KindSet:
		return "set"
	case resp.KindMap:
		return "map"
	case resp.KindSimpleString, resp.KindBulkString, resp.KindVerbatim:
		return "string"
	case resp.KindError, resp.KindBlobError:
		return "error"
	}
	return "type " + k.String()
}

// sortedNames returns the names of m's commands and subcommands ("function|load"), sorted.
func sortedNames(m map[string]*Command) []string {
	var names []string
	for name, c := range m {
		names = append(names, name)
		for short := range c.Sub {
			names = append(names, name+"|"+short)
		}
	}
	slices.Sort(names)
	return names
}
