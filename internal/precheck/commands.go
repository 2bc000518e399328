package precheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferrysync/ferry/internal/resp"
)

// CheckCommands compares the write commands the two sides know.
const CheckCommands = "commands"

// writeCommands asks a side's seed node for its commands (COMMAND) and returns the names of
// those flagged write, lower-case. ok is false when the server does not answer COMMAND
// (before Redis 2.8.13, or a user without +command).
func writeCommands(ctx context.Context, s *side) (names map[string]bool, ok bool, err error) {
	c, err := s.dialSeed(ctx)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	v, err := c.Do(ctx, "COMMAND")
	var re *resp.Error
	if errors.As(err, &re) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return parseWriteCommands(v), true, nil
}

// parseWriteCommands reads the COMMAND reply: one array per command whose first element is
// its name and third its flags.
func parseWriteCommands(v resp.Value) map[string]bool {
	names := make(map[string]bool)
	for _, e := range v.Elems {
		if len(e.Elems) < 3 {
			continue
		}
		for _, f := range e.Elems[2].Elems {
			if strings.EqualFold(string(f.Str), "write") {
				names[strings.ToLower(string(e.Elems[0].Str))] = true
				break
			}
		}
	}
	return names
}

// commands reports write commands the source knows and the target does not: if one of them
// reaches the stream, the sync stops with its name, so the user learns it now.
func (r *runner) commands(ctx context.Context) Check {
	src, ok, err := writeCommands(ctx, r.src)
	if err != nil || !ok {
		return skipf("not checked: the source does not list its commands (COMMAND): %v", orNone(err))
	}
	tgt, ok, err := writeCommands(ctx, r.tgt)
	if err != nil || !ok {
		return skipf("not checked: the target does not list its commands (COMMAND): %v", orNone(err))
	}
	return compareCommands(src, tgt)
}

func orNone(err error) string {
	if err == nil {
		return "not answered"
	}
	return err.Error()
}

// compareCommands is the pure part of the commands check.
func compareCommands(src, tgt map[string]bool) Check {
	var missing []string
	for name := range src {
		if !tgt[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return Check{Result: Pass, Found: fmt.Sprintf("the target knows all %d write commands of the source", len(src))}
	}
	slices.Sort(missing)
	return Check{
		Result: Warn,
		Found:  fmt.Sprintf("the target does not know %d write %s of the source: %s", len(missing), plural(len(missing), "command", "commands"), strings.Join(missing, ", ")),
		Advice: "if the source's stream carries one of them the sync stops with its name (the target cannot apply it); upgrade the target, or make sure the application does not use them",
	}
}
