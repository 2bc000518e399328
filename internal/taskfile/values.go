package taskfile

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/throttle"
)

// The custom types below report problems as *yaml.TypeError with "line N: ..." messages,
// so that yaml.v3 collects them with its own and Decode reports them all, by line.

func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}

// UnmarshalYAML reads {env: VARIABLE} or {file: path}, and refuses a password written
// out, without ever repeating it.
func (p *Password) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return typeError(n, "password: a password written in the task file is refused (files get copied, committed and printed); "+
			"put it in an environment variable and write password: {env: FERRY_SOURCE_PASSWORD}, "+
			"or in a file only ferry can read and write password: {file: /etc/ferry/source.pass}")
	}
	var errs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			errs = append(errs, fmt.Sprintf("line %d: password.%s: want a string", v.Line, k.Value))
			continue
		}
		switch k.Value {
		case "env":
			p.Env = v.Value
		case "file":
			p.File = v.Value
		default:
			msg := fmt.Sprintf("line %d: field '%s' not found", k.Line, k.Value)
			if s := suggest(k.Value, []string{"env", "file"}); s != "" {
				msg += fmt.Sprintf(" (did you mean '%s'?)", s)
			} else {
				msg += " (password has env, file)"
			}
			errs = append(errs, msg)
		}
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	return nil
}

// ByteSize is a number of bytes: a whole number, or a string with a unit ("64MiB", "10MB";
// see throttle.ParseBytes).
type ByteSize int64

// UnmarshalYAML reads a byte count with or without a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "want a byte size such as 1048576 or 64MiB")
	}
	v, err := throttle.ParseBytes(n.Value)
	if err != nil {
		return typeError(n, "%v", err)
	}
	*b = ByteSize(v)
	return nil
}

// DBList is a set of source databases: "0,3,5-9", or a list of numbers and ranges
// ([0, 3, "5-9"]).
type DBList []int

// UnmarshalYAML reads either form.
func (d *DBList) UnmarshalYAML(n *yaml.Node) error {
	text := n.Value
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return typeError(n, "dbs: an empty list selects no database (leave dbs out to copy every database)")
		}
		text = ""
		for i, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return typeError(c, "dbs: want database numbers and ranges such as 0, 3, \"5-9\"")
			}
			if i > 0 {
				text += ","
			}
			text += c.Value
		}
	default:
		return typeError(n, "dbs: want a list such as [0, 3, \"5-9\"] or a string such as \"0,3,5-9\"")
	}
	dbs, err := filter.ParseDBs(text)
	if err != nil {
		return typeError(n, "dbs: %v", err)
	}
	if dbs == nil {
		return typeError(n, "dbs: selects no database (leave dbs out to copy every database)")
	}
	*d = dbs
	return nil
}

// DBMap sends source databases to destination databases, optionally renaming their keys
// with a prefix: a mapping ({3: 0, 1: "prefix=db1:", 2: "0:prefix=db2:"}) or a string
// ("3:0,1:prefix=db1:"), with --db-map's syntax.
type DBMap struct {
	DBs      map[int]int
	Prefixes map[int]string
}

// IsZero: no mapping given.
func (d DBMap) IsZero() bool { return len(d.DBs) == 0 && len(d.Prefixes) == 0 }

// String is the mapping in --db-map's syntax.
func (d DBMap) String() string { return filter.FormatDBMapping(d.DBs, d.Prefixes) }

// UnmarshalYAML reads either form.
func (d *DBMap) UnmarshalYAML(n *yaml.Node) error {
	text := n.Value
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.MappingNode:
		text = ""
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
				return typeError(k, "db_map: want source: destination pairs such as 3: 0 or 1: \"prefix=db1:\"")
			}
			if _, err := strconv.Atoi(k.Value); err != nil {
				return typeError(k, "db_map: %q is not a database number", k.Value)
			}
			if strings.Contains(v.Value, ",") {
				return typeError(v, "db_map: %q: a destination or prefix cannot contain a comma", v.Value)
			}
			if i > 0 {
				text += ","
			}
			text += k.Value + ":" + v.Value
		}
	default:
		return typeError(n, "db_map: want a mapping such as {3: 0} or a string such as \"3:0\"")
	}
	dbs, prefixes, err := filter.ParseDBMapping(text)
	if err != nil {
		return typeError(n, "db_map: %v", err)
	}
	*d = DBMap{DBs: dbs, Prefixes: prefixes}
	return nil
}
