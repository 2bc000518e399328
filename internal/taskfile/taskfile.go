// Package taskfile reads a sync task from a YAML file (`ferry sync -f task.yaml`). The file
// says what the flags say, field for field (FlagValues maps one onto the other, so the two
// cannot drift apart), and is decoded strictly: an unknown field, a value of the wrong type
// or a value out of range is an error naming the file, the line and, for a misspelt field,
// the field it probably meant.
//
// Secrets never sit in the file: a password is a reference to an environment variable or
// to a file, and a password written in the file (or in a URL) is refused with advice.
//
// docs/task-file.md documents the format with an annotated example, which the tests load.
package taskfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/throttle"
)

// File is a task file. Zero values mean "not set": the flag's default applies.
type File struct {
	Name            string        `yaml:"name"`
	Source          Endpoint      `yaml:"source"`
	Target          Endpoint      `yaml:"target"`
	Mode            string        `yaml:"mode"`
	Existing        string        `yaml:"existing"`
	DataDir         string        `yaml:"data_dir"`
	ForwardPublish  bool          `yaml:"forward_publish"`
	BigKeyThreshold ByteSize      `yaml:"big_key_threshold"`
	StatusAddr      string        `yaml:"status_addr"`
	Delivery        string        `yaml:"delivery"`
	OnFullResync    string        `yaml:"on_full_resync"`
	RetryTimeout    time.Duration `yaml:"retry_timeout"`
	SourceTimeout   time.Duration `yaml:"source_timeout"`
	Filter          Filter        `yaml:"filter"`
	Throttle        Throttle      `yaml:"throttle"`

	// path is the file as named to Load (for messages); dir resolves relative paths.
	path, dir string
	root      *yaml.Node
}

// Endpoint says how to reach the source or the target.
type Endpoint struct {
	URL      string    `yaml:"url"`
	Password *Password `yaml:"password"`
	TLS      *TLS      `yaml:"tls"`
}

// Password is where a password comes from: an environment variable or a file (its first
// line). Exactly one is set.
type Password struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// TLS is the TLS material for a rediss:// endpoint. Paths are PEM files.
type TLS struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
	Insecure   bool   `yaml:"insecure"`
}

// Filter is the selection (docs/filters.md).
type Filter struct {
	DBs             DBList   `yaml:"dbs"`
	DBMap           DBMap    `yaml:"db_map"`
	AllowDBMerge    bool     `yaml:"allow_db_merge"`
	Include         []string `yaml:"include"`
	Exclude         []string `yaml:"exclude"`
	Types           []string `yaml:"types"`
	ExcludeCommands []string `yaml:"exclude_commands"`
}

// Throttle holds the rate limits of each phase.
type Throttle struct {
	Full        Limits `yaml:"full"`
	Incremental Limits `yaml:"incremental"`
}

// Limits are one phase's rates; zero is unlimited.
type Limits struct {
	MaxOps   int64    `yaml:"max_ops"`
	MaxBytes ByteSize `yaml:"max_bytes"`
}

// Values the file accepts for its enumerations. They mirror the sync flags (internal/task's
// ParseMode, ParseExisting, ParseDelivery and ParseFullResync); keep them in step.
var (
	Modes          = []string{"full+incr", "full", "incr"}
	ExistingModes  = []string{"block", "overwrite"}
	DeliveryModes  = []string{"exactly-once", "at-least-once"}
	OnFullResyncs  = []string{"auto", "flush", "fail"}
	taskNamePatten = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// Error is everything wrong with a task file, each problem with its line.
type Error struct {
	Path     string
	Problems []Problem
}

// Problem is one thing wrong with a task file. Line is 0 when it concerns the whole file.
type Problem struct {
	Line int
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Path)
		if p.Line > 0 {
			b.WriteString(" line ")
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		b.WriteString(p.Msg)
	}
	return b.String()
}

// maxFileSize bounds what Load reads: a task file is a page of YAML.
const maxFileSize = 1 << 20

// Load reads and checks a task file. Relative paths in it (password files, TLS files, the
// data directory) are taken relative to the file's directory.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("task file: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("task file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("task file %s: larger than %d bytes; is it the right file?", path, maxFileSize)
	}
	return Decode(path, data)
}

// Decode is Load for a file already read; path names it in messages and anchors relative
// paths.
func Decode(path string, data []byte) (*File, error) {
	f := &File{path: path, dir: filepath.Dir(path)}
	fail := func(line int, format string, args ...any) (*File, error) {
		return nil, &Error{Path: path, Problems: []Problem{{Line: line, Msg: fmt.Sprintf(format, args...)}}}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail(0, "the file is empty")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line, msg := syntaxError(err)
		return fail(line, "%s (YAML syntax)", msg)
	}
	f.root = &root

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(f)
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te):
		probs := make([]Problem, 0, len(te.Errors))
		for _, m := range te.Errors {
			probs = append(probs, f.explain(m))
		}
		return nil, &Error{Path: path, Problems: probs}
	case err != nil:
		line, msg := syntaxError(err)
		return fail(line, "%s", msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return fail(extra.Line, "a second YAML document: a task file holds one task")
	}
	if probs := f.check(); len(probs) > 0 {
		return nil, &Error{Path: path, Problems: probs}
	}
	f.resolvePaths()
	return f, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// syntaxError extracts the line and the message of a YAML syntax error. yaml.v3 numbers
// the lines of its parser errors ("did not find expected ...", reported at the construct
// being parsed) from 0 and those of its scanner errors from 1; the parser's are corrected.
func syntaxError(err error) (int, string) {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, err.Error()
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	for _, p := range []string{"did not find expected", "found duplicate", "found incompatible", "found undefined tag"} {
		if strings.HasPrefix(msg, p) {
			line++
			break
		}
	}
	return line, msg
}

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	cannotRE       = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
	lineRE         = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// explain turns one of yaml.v3's messages into a Problem a user can act on.
func (f *File) explain(m string) Problem {
	if g := unknownFieldRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		msg := fmt.Sprintf("field '%s' not found", g[2])
		if fields := knownFields[g[3]]; len(fields) > 0 {
			if s := suggest(g[2], fields); s != "" {
				msg += fmt.Sprintf(" (did you mean '%s'?)", s)
			} else {
				msg += fmt.Sprintf(" (%s has %s)", f.pathAt(line, true), strings.Join(fields, ", "))
			}
		}
		return Problem{Line: line, Msg: msg}
	}
	if g := cannotRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		want := "a value of type " + g[4]
		switch g[4] {
		case "int", "int64":
			want = "a whole number"
		case "bool":
			want = "true or false"
		case "string":
			want = "a string"
		case "time.Duration":
			want = "a duration such as 30s, 5m or 12h"
		case "[]string":
			want = "a list"
		default:
			if strings.HasPrefix(g[4], "taskfile.") || strings.HasPrefix(g[4], "*taskfile.") {
				want = "a mapping (indented key: value lines)"
			}
		}
		got := map[string]string{"!!str": "a string", "!!int": "a number", "!!float": "a number", "!!bool": "a boolean", "!!seq": "a list", "!!map": "a mapping", "!!null": "nothing"}[g[2]]
		if got == "" {
			got = g[2]
		}
		if g[3] != "" {
			got += " (" + g[3] + ")"
		}
		msg := fmt.Sprintf("%s: want %s, not %s", f.pathAt(line, false), want, got)
		if g[2] == "!!map" && g[4] == "string" {
			msg += ` (a value ending in ':' needs quotes, as in "tmp:")`
		}
		return Problem{Line: line, Msg: msg}
	}
	if g := lineRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		return Problem{Line: line, Msg: g[2]}
	}
	return Problem{Msg: m}
}

// knownFields lists the YAML field names of every struct in File, by the type name yaml.v3
// puts in its messages ("taskfile.Endpoint").
var knownFields = func() map[string][]string {
	out := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || out[t.String()] != nil {
			return
		}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "" || name == "-" {
				continue
			}
			names = append(names, name)
			walk(sf.Type)
		}
		out[t.String()] = names
	}
	walk(reflect.TypeOf(File{}))
	return out
}()

// suggest returns the known field closest to name, if it is close enough to be a typo
// (dashes for underscores and capitals count as typos too).
func suggest(name string, known []string) string {
	norm := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	best, bestD := "", -1
	for _, k := range known {
		if d := editDistance(norm, k); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD >= 0 && bestD <= max(1, len(best)/3) {
		return best
	}
	return ""
}

// editDistance is the optimal-string-alignment distance between two short ASCII strings:
// insertions, deletions, substitutions and swaps of neighbours ("evn" for "env") cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// pathAt names the field whose key or value sits on line ("throttle.full.max_ops"); with
// parent, the mapping that holds it ("the top level" for the root).
func (f *File) pathAt(line int, parent bool) string {
	var found []string
	var walk func(n *yaml.Node, path []string) bool
	walk = func(n *yaml.Node, path []string) bool {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if walk(c, path) {
					return true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(slices.Clone(path), k.Value)
				if k.Line == line {
					found = p
					return true
				}
				if walk(v, p) {
					return true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := append(slices.Clone(path), "["+strconv.Itoa(i)+"]")
				if c.Line == line {
					found = p
					return true
				}
				if walk(c, p) {
					return true
				}
			}
		}
		return false
	}
	if f.root != nil {
		walk(f.root, nil)
	}
	if parent && len(found) > 0 {
		found = found[:len(found)-1]
	}
	if len(found) == 0 {
		if parent {
			return "the top level"
		}
		return "this value"
	}
	return strings.ReplaceAll(strings.Join(found, "."), ".[", "[")
}

// node finds the node at a dotted path of keys ("filter.include"), or nil.
func (f *File) node(path string) *yaml.Node {
	if f.root == nil || len(f.root.Content) == 0 {
		return nil
	}
	n := f.root.Content[0]
	for _, key := range strings.Split(path, ".") {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// line is the line of the value at path, or 0 when the file does not set it.
func (f *File) line(path string) int {
	if n := f.node(path); n != nil {
		return n.Line
	}
	return 0
}

// itemLine is the line of the i-th item of the list at path.
func (f *File) itemLine(path string, i int) int {
	n := f.node(path)
	if n == nil {
		return 0
	}
	if n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i].Line
	}
	return n.Line
}

// check validates values: enumerations, ranges, URLs, the selection, the limits.
func (f *File) check() []Problem {
	var probs []Problem
	add := func(path string, format string, args ...any) {
		probs = append(probs, Problem{Line: f.line(path), Msg: path + ": " + fmt.Sprintf(format, args...)})
	}
	if f.Name != "" && !taskNamePatten.MatchString(f.Name) {
		add("name", "%q: use 1-64 letters, digits, '.', '_' or '-'", f.Name)
	}
	for _, side := range []struct {
		name string
		e    *Endpoint
	}{{"source", &f.Source}, {"target", &f.Target}} {
		probs = append(probs, f.checkEndpoint(side.name, side.e)...)
	}
	oneOf := func(path, v string, allowed []string) {
		if v != "" && !slices.Contains(allowed, v) {
			add(path, "%q: want %s", v, strings.Join(allowed, ", "))
		}
	}
	oneOf("mode", f.Mode, Modes)
	oneOf("existing", f.Existing, ExistingModes)
	oneOf("delivery", f.Delivery, DeliveryModes)
	oneOf("on_full_resync", f.OnFullResync, OnFullResyncs)
	if f.BigKeyThreshold < 0 {
		add("big_key_threshold", "must be positive")
	}
	for path, d := range map[string]time.Duration{"retry_timeout": f.RetryTimeout, "source_timeout": f.SourceTimeout} {
		if d < 0 {
			add(path, "%v: must not be negative", d)
		}
	}
	probs = append(probs, f.checkFilter()...)
	for _, ph := range []struct {
		name string
		l    Limits
	}{{"throttle.full", f.Throttle.Full}, {"throttle.incremental", f.Throttle.Incremental}} {
		if ph.l.MaxOps < 0 {
			add(ph.name+".max_ops", "%d: want 0 (unlimited) or a positive rate", ph.l.MaxOps)
		}
		if ph.l.MaxBytes < 0 {
			add(ph.name+".max_bytes", "want 0 (unlimited) or a positive rate")
		}
	}
	slices.SortStableFunc(probs, func(a, b Problem) int { return a.Line - b.Line })
	return probs
}

func (f *File) checkEndpoint(side string, e *Endpoint) []Problem {
	var probs []Problem
	add := func(path string, format string, args ...any) {
		line := f.line(path)
		if line == 0 {
			line = f.line(side)
		}
		probs = append(probs, Problem{Line: line, Msg: path + ": " + fmt.Sprintf(format, args...)})
	}
	if e.URL == "" {
		add(side+".url", "required (redis://host:port[/db], rediss:// for TLS)")
		return probs
	}
	// The URL is never echoed: it may hold a password.
	u, err := url.Parse(e.URL)
	switch {
	case err != nil:
		add(side+".url", "not a URL (want redis://host:port[/db], rediss:// for TLS)")
		return probs
	case u.Scheme != "redis" && u.Scheme != "rediss":
		add(side+".url", "scheme %q: want redis:// or rediss://", u.Scheme)
	case u.Host == "":
		add(side+".url", "no host (want redis://host:port[/db])")
	}
	if _, has := u.User.Password(); has {
		add(side+".url", "holds a password, and passwords are not written in task files: keep the user in the URL (redis://user@host:port) and give the password as %s.password: {env: VARIABLE} or {file: path}", side)
	}
	if p := e.Password; p != nil {
		switch {
		case p.Env == "" && p.File == "":
			add(side+".password", "give env: VARIABLE or file: path")
		case p.Env != "" && p.File != "":
			add(side+".password", "give env or file, not both")
		}
	}
	if e.TLS != nil {
		if u.Scheme == "redis" {
			add(side+".tls", "TLS settings for a redis:// URL; use rediss:// to connect with TLS")
		}
		if (e.TLS.Cert == "") != (e.TLS.Key == "") {
			add(side+".tls", "cert and key go together")
		}
	}
	return probs
}

func (f *File) checkFilter() []Problem {
	var probs []Problem
	fl := &f.Filter
	for i, s := range fl.Include {
		if _, err := filter.ParsePattern(s); err != nil {
			probs = append(probs, Problem{Line: f.itemLine("filter.include", i), Msg: fmt.Sprintf("filter.include[%d]: %v", i, err)})
		}
	}
	for i, s := range fl.Exclude {
		if _, err := filter.ParsePattern(s); err != nil {
			probs = append(probs, Problem{Line: f.itemLine("filter.exclude", i), Msg: fmt.Sprintf("filter.exclude[%d]: %v", i, err)})
		}
	}
	for i, s := range fl.Types {
		if _, err := filter.ParseTypes(s); err != nil || strings.Contains(s, ",") {
			probs = append(probs, Problem{Line: f.itemLine("filter.types", i), Msg: fmt.Sprintf("filter.types[%d]: %q is not one of %s", i, s, strings.Join(filter.TypeNames, ", "))})
		}
	}
	for i, s := range fl.ExcludeCommands {
		if _, err := filter.ParseCommands(s); err != nil || strings.Contains(s, ",") {
			msg := fmt.Sprintf("filter.exclude_commands[%d]: %q: one command name per item", i, s)
			if err != nil {
				msg = fmt.Sprintf("filter.exclude_commands[%d]: %v", i, err)
			}
			probs = append(probs, Problem{Line: f.itemLine("filter.exclude_commands", i), Msg: msg})
		}
	}
	if len(probs) == 0 {
		// The rules that need the whole selection (map sources selected, no two sources
		// into one destination unless allowed).
		spec, err := f.FilterSpec()
		if err == nil {
			_, err = filter.New(spec)
		}
		if err != nil {
			line := f.line("filter.db_map")
			if line == 0 {
				line = f.line("filter")
			}
			probs = append(probs, Problem{Line: line, Msg: "filter: " + err.Error()})
		}
	}
	return probs
}

// resolvePaths makes relative paths relative to the task file's directory, which is what a
// reader of the file expects (not the directory ferry happens to be started from).
func (f *File) resolvePaths() {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(f.dir, *p)
		}
	}
	for _, e := range []*Endpoint{&f.Source, &f.Target} {
		if e.Password != nil {
			abs(&e.Password.File)
		}
		if e.TLS != nil {
			abs(&e.TLS.CA)
			abs(&e.TLS.Cert)
			abs(&e.TLS.Key)
		}
	}
	abs(&f.DataDir)
}

// Path is the file as it was named to Load.
func (f *File) Path() string { return f.path }

// FilterSpec is the file's selection as a filter.Spec.
func (f *File) FilterSpec() (filter.Spec, error) {
	return filter.ParseSpec(filter.Strings{
		DBs:             filter.FormatDBs(f.Filter.DBs),
		DBMap:           f.Filter.DBMap.String(),
		AllowDBMerge:    f.Filter.AllowDBMerge,
		Include:         f.Filter.Include,
		Exclude:         f.Filter.Exclude,
		Types:           strings.Join(f.Filter.Types, ","),
		ExcludeCommands: strings.Join(f.Filter.ExcludeCommands, ","),
	})
}

// ThrottleConfig is the file's throttle.
func (f *File) ThrottleConfig() throttle.Config {
	return throttle.Config{
		Full:        throttle.Limits{MaxOps: f.Throttle.Full.MaxOps, MaxBytes: int64(f.Throttle.Full.MaxBytes)},
		Incremental: throttle.Limits{MaxOps: f.Throttle.Incremental.MaxOps, MaxBytes: int64(f.Throttle.Incremental.MaxBytes)},
	}
}
