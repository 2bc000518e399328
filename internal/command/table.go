package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/resp"
)

// Table knows the commands of one server and where their keys are, from the server's own
// COMMAND reply: Redis 7 key specs where the server has them, the legacy first/last/step
// positions otherwise. Nothing about individual commands is hard-coded, so a command
// added by a newer server or a module is handled as soon as the server describes it. A
// Table is immutable and safe for concurrent use.
type Table struct {
	cmds map[string]*Command
	// specs is true when the server described its commands with key specs (Redis 7+).
	specs bool
}

// Doer runs one command on a server; *redis.Conn is one.
type Doer interface {
	Do(ctx context.Context, args ...any) (resp.Value, error)
}

// Load builds the Table of the server behind d with COMMAND.
func Load(ctx context.Context, d Doer) (*Table, error) {
	v, err := d.Do(ctx, "COMMAND")
	if err != nil {
		return nil, fmt.Errorf("command table: COMMAND: %w (the user needs +command)", err)
	}
	return NewTable(v)
}

// NewTable builds a Table from a COMMAND (or COMMAND INFO) reply.
func NewTable(reply resp.Value) (*Table, error) {
	if !isArray(reply) {
		return nil, &ParseError{Msg: fmt.Sprintf("the reply is not an array (%s)", describe(reply))}
	}
	t := &Table{cmds: make(map[string]*Command, len(reply.Elems))}
	count := 0
	for _, e := range reply.Elems {
		c, err := parseCommand(e, &count, 0)
		if err != nil {
			return nil, err
		}
		if c == nil {
			continue
		}
		if c.Specs != nil {
			t.specs = true
		}
		t.cmds[c.Name] = c
	}
	return t, nil
}

// KeySpecs reports whether the server described its commands with Redis 7 key specs.
func (t *Table) KeySpecs() bool { return t.specs }

// Len is the number of commands, subcommands not counted.
func (t *Table) Len() int { return len(t.cmds) }

// Names returns every command and subcommand name ("function|load"), sorted.
func (t *Table) Names() []string { return sortedNames(t.cmds) }

// Command returns a command or subcommand by its name ("set", "function|load"), or nil.
func (t *Table) Command(name string) *Command {
	name = strings.ToLower(name)
	parent, short, sub := strings.Cut(name, "|")
	c := t.cmds[parent]
	if c == nil || !sub {
		return c
	}
	return c.Sub[short]
}

// Lookup returns the command that args invoke: for a container (FUNCTION, SCRIPT,
// XGROUP…) its subcommand named by args[1]. It returns nil for an unknown command or
// subcommand. It does not allocate.
func (t *Table) Lookup(args [][]byte) *Command {
	if len(args) == 0 {
		return nil
	}
	c := lookupName(t.cmds, args[0])
	if c == nil || c.Sub == nil || len(args) < 2 {
		return c
	}
	return lookupName(c.Sub, args[1])
}

// lookupName finds name in m, whose keys are lower case. The conversions happen in the
// map index expressions, which the compiler does without allocating; names are short,
// so one that is not lower case already is lowered on the stack.
func lookupName(m map[string]*Command, name []byte) *Command {
	if c, ok := m[string(name)]; ok {
		return c
	}
	var buf [64]byte
	if len(name) > len(buf) {
		return m[strings.ToLower(string(name))]
	}
	n := copy(buf[:], name)
	changed := false
	for i := range n {
		if 'A' <= buf[i] && buf[i] <= 'Z' {
			buf[i] += 'a' - 'A'
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return m[string(buf[:n])]
}

// Key is a key argument of a command.
type Key struct {
	Pos   int      // index in the arguments (the command name is 0)
	Flags KeyFlags // the flags of the key spec that found it; 0 when unknown
}

// UnknownCommandError is returned for a command the table does not know.
type UnknownCommandError struct{ Name string }

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("command table: unknown command %q: the destination's COMMAND does not list it "+
		"(older server, or a module it lacks)", e.Name)
}

// ErrNeedServer is returned by Keys when only the server can tell where the keys are
// (a key spec of type unknown or incomplete, or a legacy command with movable keys) and
// no server was given.
var ErrNeedServer = errors.New("command table: key positions depend on the arguments in a way only the server knows (COMMAND GETKEYS)")

// KeysFromSpecs appends the positions of args's keys to dst, computed from the table
// alone as the server computes them from its key specs. ok is false when the specs cannot
// say; then dst is returned unchanged and the server must be asked (Keys does).
func (c *Command) KeysFromSpecs(args [][]byte, dst []Key) ([]Key, bool) {
	if c.Specs == nil {
		return c.legacyKeys(args, dst)
	}
	start := len(dst)
	argc := len(args)
	for _, s := range c.Specs {
		if s.Flags&KeyNotKey != 0 {
			continue
		}
		if s.Flags&KeyIncomplete != 0 {
			return dst[:start], false
		}
		first := 0
		switch s.Begin.Kind {
		case SearchIndex:
			first = s.Begin.Index
		case SearchKeyword:
			first = keywordSearch(args, s.Begin.Keyword, s.Begin.StartFrom)
			if first == 0 {
				continue // keyword absent: this spec has no keys
			}
		default:
			return dst[:start], false
		}
		var last, step int
		switch s.Find.Kind {
		case SearchRange:
			step = s.Find.KeyStep
			switch {
			case s.Find.LastKey >= 0:
				last = first + s.Find.LastKey
			case s.Find.Limit == 0:
				last = argc + s.Find.LastKey
			default:
				last = first + (argc-first)/s.Find.Limit + s.Find.LastKey
			}
		case SearchKeynum:
			step = s.Find.KeyStep
			idx := first + s.Find.KeyNumIdx
			if idx >= argc {
				return dst[:start], false
			}
			n, err := strconv.ParseInt(string(args[idx]), 10, 64)
			if err != nil || n < 0 || n > int64(argc) {
				return dst[:start], false
			}
			if n == 0 {
				// EVAL/FCALL with no keys. The server's spec evaluation calls this invalid
				// and falls back to the command's own key finder, which finds none.
				continue
			}
			first += s.Find.FirstKey
			last = first + int(n) - 1
		default:
			return dst[:start], false
		}
		if last >= argc || last < first || first >= argc || first < 1 {
			// Out of bounds: the command has a syntax error, and the server's spec
			// evaluation gives up on it too.
			return dst[:start], false
		}
		for i := first; i <= last; i += step {
			dst = append(dst, Key{Pos: i, Flags: s.Flags})
		}
	}
	return dst, true
}

// keywordSearch finds keyword in args as Redis's key spec evaluation does: forwards
// from startFrom to the second-to-last argument, or, for a negative startFrom, backwards
// from len(args)+startFrom down to index 2. It returns the index after the keyword, or 0.
func keywordSearch(args [][]byte, keyword string, startFrom int) int {
	argc := len(args)
	start, end := startFrom, argc-1
	if startFrom <= 0 {
		start, end = argc+startFrom, 1
	}
	for i := start; i != end; {
		if i >= argc || i < 1 {
			break
		}
		if equalFoldString(args[i], keyword) {
			return i + 1
		}
		if start <= end {
			i++
		} else {
			i--
		}
	}
	return 0
}

// legacyKeys evaluates first/last/step, for servers without key specs.
func (c *Command) legacyKeys(args [][]byte, dst []Key) ([]Key, bool) {
	if c.Flags&FlagMovableKeys != 0 {
		return dst, false
	}
	if c.First <= 0 {
		return dst, true
	}
	last := c.Last
	if last < 0 {
		last += len(args)
	}
	step := max(c.Step, 1)
	for i := c.First; i <= last && i < len(args); i += step {
		dst = append(dst, Key{Pos: i})
	}
	return dst, true
}

// Keys appends the positions of args's keys to dst. Where the key specs cannot say, it
// asks the server behind d with COMMAND GETKEYSANDFLAGS (COMMAND GETKEYS on servers
// before 7.0), one round trip per such command and nothing cached, so memory does not
// grow with the variety of arguments; with d nil it returns ErrNeedServer. A command
// the table does not know is an *UnknownCommandError.
func (t *Table) Keys(ctx context.Context, d Doer, args [][]byte, dst []Key) ([]Key, error) {
	c := t.Lookup(args)
	if c == nil {
		return dst, t.unknown(args)
	}
	if keys, ok := c.KeysFromSpecs(args, dst); ok {
		return keys, nil
	}
	if d == nil {
		return dst, ErrNeedServer
	}
	return GetKeys(ctx, d, args, dst, t.specs)
}

func (t *Table) unknown(args [][]byte) error {
	if len(args) == 0 {
		return errors.New("command table: empty command")
	}
	name := string(args[0])
	if c := lookupName(t.cmds, args[0]); c != nil && c.Sub != nil {
		if len(args) < 2 {
			return fmt.Errorf("command table: %s needs a subcommand", name)
		}
		name += " " + string(args[1])
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return &UnknownCommandError{Name: name}
}

// GetKeys asks the server for the keys of args with COMMAND GETKEYSANDFLAGS (flags too,
// Redis 7) or COMMAND GETKEYS, and appends their positions to dst. The server answers
// with key names; they are matched to arguments in order, each key to the first
// argument after the command name equal to it that is not matched yet.
func GetKeys(ctx context.Context, d Doer, args [][]byte, dst []Key, withFlags bool) ([]Key, error) {
	q := make([]any, 0, len(args)+2)
	sub := "GETKEYS"
	if withFlags {
		sub = "GETKEYSANDFLAGS"
	}
	q = append(q, "COMMAND", sub)
	for _, a := range args {
		q = append(q, a)
	}
	v, err := d.Do(ctx, q...)
	if err != nil {
		var e *resp.Error
		if errors.As(err, &e) {
			m := strings.ToLower(e.Msg)
			// "The command has no key arguments", "Invalid arguments specified for
			// command": the server finds no keys, as for EVAL … 0.
			if strings.Contains(m, "no key arguments") || strings.Contains(m, "invalid arguments") {
				return dst, nil
			}
		}
		return dst, fmt.Errorf("command table: COMMAND %s %s: %w", sub, clip(args[0]), err)
	}
	if !isArray(v) {
		return dst, fmt.Errorf("command table: COMMAND %s %s: reply is %s", sub, clip(args[0]), describe(v))
	}
	start := len(dst)
	for _, e := range v.Elems {
		var name []byte
		var flags KeyFlags
		if withFlags {
			if !isArray(e) || len(e.Elems) != 2 || !isArray(e.Elems[1]) {
				return dst[:start], fmt.Errorf("command table: COMMAND %s %s: an element is %s", sub, clip(args[0]), describe(e))
			}
			name = e.Elems[0].Str
			for _, f := range e.Elems[1].Elems {
				s, _ := str(f)
				flags |= keyFlagNames[strings.ToLower(s)]
			}
		} else {
			name = e.Str
		}
		pos := 0
		for i := 1; i < len(args); i++ {
			if bytes.Equal(args[i], name) && !taken(dst[start:], i) {
				pos = i
				break
			}
		}
		if pos == 0 {
			return dst[:start], fmt.Errorf("command table: COMMAND %s %s named a key that is not among the arguments", sub, clip(args[0]))
		}
		dst = append(dst, Key{Pos: pos, Flags: flags})
	}
	return dst, nil
}

func taken(keys []Key, pos int) bool {
	for _, k := range keys {
		if k.Pos == pos {
			return true
		}
	}
	return false
}

func clip(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.ToUpper(string(b))
}

// equalFoldString compares b with s, ASCII case-insensitively.
func equalFoldString(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
