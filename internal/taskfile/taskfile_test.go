package taskfile

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/throttle"
)

// docBlocks returns the fenced blocks of docs/task-file.md with the given info string.
func docBlocks(t *testing.T, lang string) []string {
	t.Helper()
	data, err := os.ReadFile("../../docs/task-file.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?ms)^```" + lang + "\n(.*?)^```\n")
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestDocsExample loads the annotated example of docs/task-file.md, so that the docs never
// show a file Ferry would refuse, and checks that the flags the docs say it stands for are
// exactly FlagValues.
func TestDocsExample(t *testing.T) {
	yamls := docBlocks(t, "yaml")
	if len(yamls) == 0 {
		t.Fatal("docs/task-file.md has no yaml block")
	}
	f, err := Decode("/etc/ferry/orders.yaml", []byte(yamls[0]))
	if err != nil {
		t.Fatalf("the documented example does not load:\n%v", err)
	}
	var flags []string
	for _, b := range docBlocks(t, "text") {
		if strings.HasPrefix(b, "--task=") {
			flags = strings.Split(strings.TrimSpace(b), "\n")
		}
	}
	if flags == nil {
		t.Fatal("docs/task-file.md does not show the example's flags")
	}
	if got := f.Args(); !slices.Equal(got, flags) {
		t.Errorf("the docs say the example is\n%s\nbut FlagValues gives\n%s", strings.Join(flags, "\n"), strings.Join(got, "\n"))
	}
	// Every field is set in the example, so every flag of the format is exercised.
	for _, name := range []string{"name", "source.password.env", "target.tls.insecure", "retry_timeout",
		"filter.allow_db_merge", "throttle.incremental.max_bytes"} {
		if f.line(name) == 0 {
			t.Errorf("the example does not set %s", name)
		}
	}
	spec, err := f.FilterSpec()
	if err != nil {
		t.Fatal(err)
	}
	flt, err := filter.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	if dst, ok := flt.KeepDB(3); !ok || dst != 0 || flt.KeepKey([]byte("tmp:1")) || !flt.KeepKey([]byte("session:42")) {
		t.Errorf("the example's selection is not the documented one: %+v", spec)
	}
	want := throttle.Config{Full: throttle.Limits{MaxOps: 50000, MaxBytes: 64 << 20}, Incremental: throttle.Limits{MaxOps: 5000}}
	if got := f.ThrottleConfig(); got != want {
		t.Errorf("ThrottleConfig = %+v, want %+v", got, want)
	}
	if f.RetryTimeout != 10*time.Minute || f.Target.TLS.CA != "/etc/ferry/certs/ca.pem" || f.DataDir != "/var/lib/ferry" {
		t.Errorf("decoded %+v", f)
	}
}

// lines numbers a file's lines, so tests can say which line a problem is on.
func mustFail(t *testing.T, yml string) *Error {
	t.Helper()
	_, err := Decode("task.yaml", []byte(yml))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode accepted (or failed without a *Error: %v):\n%s", err, yml)
	}
	return e
}

const minimal = "source:\n  url: redis://127.0.0.1:6379\ntarget:\n  url: redis://127.0.0.1:6380\n"

func TestUnknownFields(t *testing.T) {
	cases := []struct {
		yml, want string
	}{
		{"name: t1\n\n# comment\n\n\n\nsouce:\n  url: redis://a:1\n", "task.yaml line 7: field 'souce' not found (did you mean 'source'?)"},
		{minimal + "data-dir: /x\n", "task.yaml line 5: field 'data-dir' not found (did you mean 'data_dir'?)"},
		{minimal + "Mode: full\n", "task.yaml line 5: field 'Mode' not found (did you mean 'mode'?)"},
		{"source:\n  url: redis://a:1\n  pasword:\n    env: X\n", "task.yaml line 3: field 'pasword' not found (did you mean 'password'?)"},
		{"source:\n  url: redis://a:1\n  password:\n    evn: X\n", "task.yaml line 4: field 'evn' not found (did you mean 'env'?)"},
		{minimal + "throttle:\n  full:\n    max_op: 5\n", "task.yaml line 7: field 'max_op' not found (did you mean 'max_ops'?)"},
		{minimal + "filter:\n  exclude_command: [flushall]\n", "task.yaml line 6: field 'exclude_command' not found (did you mean 'exclude_commands'?)"},
		{minimal + "colour: red\n", "task.yaml line 5: field 'colour' not found (the top level has name, source, target, mode, existing, data_dir, forward_publish, big_key_threshold, status_addr, delivery, on_full_resync, retry_timeout, source_timeout, filter, throttle)"},
		{minimal + "throttle:\n  incremental:\n    speed: 1\n", "task.yaml line 7: field 'speed' not found (throttle.incremental has max_ops, max_bytes)"},
	}
	for _, c := range cases {
		if got := mustFail(t, c.yml).Error(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestTypeErrors(t *testing.T) {
	cases := []struct {
		yml, want string
	}{
		{minimal + "throttle:\n  full:\n    max_ops: fast\n", "task.yaml line 7: throttle.full.max_ops: want a whole number, not a string (fast)"},
		{minimal + "retry_timeout: 5\n", "task.yaml line 5: retry_timeout: want a duration such as 30s, 5m or 12h, not a number (5)"},
		{minimal + "retry_timeout: soon\n", "task.yaml line 5: retry_timeout: want a duration such as 30s, 5m or 12h, not a string (soon)"},
		{minimal + "forward_publish: maybe\n", "task.yaml line 5: forward_publish: want true or false, not a string (maybe)"},
		{minimal + "filter:\n  exclude:\n    - tmp:\n", `task.yaml line 7: filter.exclude[0]: want a string, not a mapping (a value ending in ':' needs quotes, as in "tmp:")`},
		{minimal + "filter:\n  include: user\n", "task.yaml line 6: filter.include: want a list, not a string (user)"},
		{minimal + "filter: [1]\n", "task.yaml line 5: filter: want a mapping (indented key: value lines), not a list"},
		{minimal + "big_key_threshold: 8 parsecs\n", `task.yaml line 5: byte size "8 parsecs": want a number with an optional unit, such as 1048576, 64MiB or 10MB`},
		{minimal + "filter:\n  dbs: [1, 300]\n", `task.yaml line 6: dbs: db list "1,300": database 300 is out of range (0-255)`},
		{minimal + "filter:\n  dbs: []\n", "task.yaml line 6: dbs: an empty list selects no database (leave dbs out to copy every database)"},
		{minimal + "filter:\n  db_map: {3: 0, 3: 1}\n", `task.yaml line 6: db_map: db map "3:0,3:1": source db 3 is mapped twice (to 0 and to 1)`},
		{minimal + "filter:\n  db_map: {x: 0}\n", `task.yaml line 6: db_map: "x" is not a database number`},
		{minimal + "name: a\nname: b\n", `task.yaml line 6: mapping key "name" already defined at line 5`},
	}
	for _, c := range cases {
		if got := mustFail(t, c.yml).Error(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
	// Several problems are all reported, each with its line.
	e := mustFail(t, "souce: 1\nmode: [x]\nthrottle:\n  full:\n    max_ops: x\n")
	var lines []int
	for _, p := range e.Problems {
		lines = append(lines, p.Line)
	}
	if !slices.Equal(lines, []int{1, 2, 5}) {
		t.Errorf("problems on lines %v, want 1, 2, 5:\n%v", lines, e)
	}
}

func TestValues(t *testing.T) {
	cases := []struct {
		yml, want string
	}{
		{minimal + "mode: fast\n", `task.yaml line 5: mode: "fast": want full+incr, full, incr`},
		{minimal + "existing: replace\n", `task.yaml line 5: existing: "replace": want block, overwrite`},
		{minimal + "delivery: twice\n", `task.yaml line 5: delivery: "twice": want exactly-once, at-least-once`},
		{minimal + "on_full_resync: panic\n", `task.yaml line 5: on_full_resync: "panic": want auto, flush, fail`},
		{minimal + "name: my task\n", `task.yaml line 5: name: "my task": use 1-64 letters, digits, '.', '_' or '-'`},
		{minimal + "retry_timeout: -5s\n", "task.yaml line 5: retry_timeout: -5s: must not be negative"},
		{minimal + "throttle:\n  full:\n    max_ops: -1\n", "task.yaml line 7: throttle.full.max_ops: -1: want 0 (unlimited) or a positive rate"},
		{"target:\n  url: redis://a:1\n", "task.yaml: source.url: required (redis://host:port[/db], rediss:// for TLS)"},
		{"source:\n  url: http://a:1\ntarget:\n  url: redis://b:1\n", `task.yaml line 2: source.url: scheme "http": want redis:// or rediss://`},
		{minimal + "filter:\n  exclude:\n    - \"tmp:\"\n    - \"re:(\"\n", "task.yaml line 8: filter.exclude[1]: key pattern \"re:(\": error parsing regexp: missing closing ): `(`"},
		{minimal + "filter:\n  include: [\"p:\"]\n", `task.yaml line 6: filter.include[0]: key pattern "p:": nothing after "p:" (to match keys beginning with "p:", write p:p:)`},
		{minimal + "filter:\n  types: [string, blob]\n", `task.yaml line 6: filter.types[1]: "blob" is not one of string, list, set, zset, hash, stream, module`},
		{minimal + "filter:\n  exclude_commands: [exec]\n", `task.yaml line 6: filter.exclude_commands[0]: command "exec" cannot be excluded: it carries the stream's transaction and database boundaries`},
		{minimal + "filter:\n  dbs: [1, 3]\n  db_map: {5: 0}\n", "task.yaml line 7: filter: --db-map maps source db 5, which --dbs does not select (add it to --dbs or drop it from --db-map)"},
		{minimal + "filter:\n  dbs: \"1,3\"\n  db_map: \"3:1\"\n", "task.yaml line 7: filter: source dbs 1 and 3 would both land in destination db 1, and their keys would overwrite each other: select fewer databases with --dbs, map one elsewhere with --db-map, or allow it with --db-merge when the key spaces are disjoint"},
		{"source:\n  url: redis://a:1\n  tls:\n    ca: x.pem\ntarget:\n  url: redis://b:1\n", "task.yaml line 4: source.tls: TLS settings for a redis:// URL; use rediss:// to connect with TLS"},
		{"source:\n  url: rediss://a:1\n  tls:\n    cert: c.pem\ntarget:\n  url: redis://b:1\n", "task.yaml line 4: source.tls: cert and key go together"},
		{"source:\n  url: redis://a:1\n  password: {}\ntarget:\n  url: redis://b:1\n", "task.yaml line 3: source.password: give env: VARIABLE or file: path"},
		{"source:\n  url: redis://a:1\n  password: {env: A, file: b}\ntarget:\n  url: redis://b:1\n", "task.yaml line 3: source.password: give env or file, not both"},
		{"", "task.yaml: the file is empty"},
		{minimal + "---\nname: second\n", "task.yaml line 5: a second YAML document: a task file holds one task"},
		{minimal + "mode: [unclosed\n", "task.yaml line 5: did not find expected ',' or ']' (YAML syntax)"},
		{"mode: [unclosed\n", "task.yaml line 2: did not find expected ',' or ']' (YAML syntax)"}, // at the end of the input
		{minimal + "mode: full: x\n", "task.yaml line 5: mapping values are not allowed in this context (YAML syntax)"},
		{minimal + "mode:\tfull\n\tx: 1\n", "task.yaml line 5: found a tab character that violates indentation (YAML syntax)"},
	}
	for _, c := range cases {
		if got := mustFail(t, c.yml).Error(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

// TestSecretsRefused: a password in the file or in a URL is refused, and never repeated.
func TestSecretsRefused(t *testing.T) {
	const secret = "hunter2-Zq9"
	for _, yml := range []string{
		"source:\n  url: redis://a:1\n  password: " + secret + "\ntarget:\n  url: redis://b:1\n",
		"source:\n  url: redis://a:1\n  password: \"" + secret + "\"\ntarget:\n  url: redis://b:1\n",
		"source:\n  url: redis://user:" + secret + "@a:1\ntarget:\n  url: redis://b:1\n",
		"source:\n  url: redis://:" + secret + "@a:1\ntarget:\n  url: redis://b:1\n",
		"source:\n  url: redis://a:1\n  password: [" + secret + "]\ntarget:\n  url: redis://b:1\n",
		"source:\n  url: redis://a:1\n  password:\n    env: [" + secret + "]\ntarget:\n  url: redis://b:1\n",
	} {
		e := mustFail(t, yml)
		msg := e.Error()
		if strings.Contains(msg, secret) || strings.Contains(msg, secret[:7]) {
			t.Errorf("the error repeats the password: %s", msg)
		}
		if !strings.Contains(msg, "line ") || !(strings.Contains(msg, "{env: ") || strings.Contains(msg, "want a string")) {
			t.Errorf("the error gives no line or no advice: %s", msg)
		}
	}
	f, err := Decode("task.yaml", []byte("source:\n  url: redis://ferry@a:1\n  password: {env: SRC_PW}\ntarget:\n  url: redis://b:1\n  password: {file: pw.txt}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Source.Password.Env != "SRC_PW" || f.Target.Password.File != "pw.txt" {
		t.Errorf("password references: %+v %+v", f.Source.Password, f.Target.Password)
	}
}

// syncFlags declares the flags of `ferry sync` the task file maps to, as cli/sync.go does
// (and will, for the flags this change proposes).
func syncFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("sync", pflag.ContinueOnError)
	for _, side := range []string{"source", "target"} {
		fs.String(side, "", "")
		for _, n := range []string{"password-env", "password-file", "tls-ca", "tls-cert", "tls-key", "tls-server-name"} {
			fs.String(side+"-"+n, "", "")
		}
		fs.Bool(side+"-tls-insecure", false, "")
	}
	for _, n := range []string{"task", "existing", "data-dir", "status-addr", "delivery", "on-full-resync", "dbs", "db-map", "types", "exclude-commands"} {
		fs.String(n, "", "")
	}
	fs.String("mode", "full+incr", "")
	fs.Bool("forward-publish", false, "")
	fs.Bool("db-merge", false, "")
	fs.Int64("big-key-threshold", 8<<20, "")
	fs.Duration("retry-timeout", time.Minute, "")
	fs.Duration("source-timeout", 0, "")
	fs.StringArray("include", nil, "")
	fs.StringArray("exclude", nil, "")
	for _, n := range []string{"full-max-ops", "full-max-bytes", "incr-max-ops", "incr-max-bytes"} {
		fs.Int64(n, 0, "")
	}
	return fs
}

func flagState(fs *pflag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

// TestFileEqualsFlags: applying a file sets the flags to exactly what its equivalent command
// line sets them to; a flag on the command line wins; a setting without a flag is an error.
func TestFileEqualsFlags(t *testing.T) {
	f, err := Decode("/etc/ferry/orders.yaml", []byte(docBlocks(t, "yaml")[0]))
	if err != nil {
		t.Fatal(err)
	}
	fromFile := syncFlags()
	if err := fromFile.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(fromFile); err != nil {
		t.Fatal(err)
	}
	fromArgs := syncFlags()
	if err := fromArgs.Parse(f.Args()); err != nil {
		t.Fatal(err)
	}
	a, b := flagState(fromFile), flagState(fromArgs)
	for name := range a {
		if a[name] != b[name] {
			t.Errorf("--%s: %q from the file, %q from the flags", name, a[name], b[name])
		}
	}
	if a["include"] != "[user:,order:*,re:^session:[0-9]+$]" || a["mode"] != "full+incr" || a["incr-max-ops"] != "5000" {
		t.Errorf("applied flags: %v", a)
	}

	// The command line wins over the file, repeatable flags included.
	cl := syncFlags()
	if err := cl.Parse([]string{"--mode=full", "--include=only:"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(cl); err != nil {
		t.Fatal(err)
	}
	if got := flagState(cl); got["mode"] != "full" || got["include"] != "[only:]" || got["dbs"] != "1,3" {
		t.Errorf("command line over file: mode %s include %s dbs %s", got["mode"], got["include"], got["dbs"])
	}

	// A setting this build has no flag for is not silently ignored.
	partial := pflag.NewFlagSet("old", pflag.ContinueOnError)
	partial.String("source", "", "")
	partial.String("target", "", "")
	err = f.Apply(partial)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "/etc/ferry/orders.yaml line 3: name: this build of ferry has no --task flag") {
		t.Errorf("Apply onto a flag set without --task: %v", err)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.yaml")
	yml := "source:\n  url: rediss://a:1\n  password: {file: pw}\n  tls: {ca: ca.pem, cert: /abs/c.pem, key: k.pem}\ntarget:\n  url: redis://b:1\ndata_dir: state\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Source.Password.File != filepath.Join(dir, "pw") || f.Source.TLS.CA != filepath.Join(dir, "ca.pem") ||
		f.Source.TLS.Cert != "/abs/c.pem" || f.DataDir != filepath.Join(dir, "state") || f.Path() != path {
		t.Errorf("paths not resolved against the file's directory: %+v %+v %s", f.Source.Password, f.Source.TLS, f.DataDir)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"source", "target", "mode", "existing", "data_dir", "filter", "throttle"}
	for in, want := range map[string]string{"souce": "source", "tagret": "target", "DATA_DIR": "data_dir", "filtr": "filter", "xyz": "", "moed": "mode", "throttling": ""} {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecode: any input is accepted or refused with a *Error; nothing panics; an accepted
// file's flags parse back into the sync flags.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "filter:\n  dbs: [1, \"3-5\"]\n  db_map: {3: 0}\n  exclude: [\"tmp:*\"]\nthrottle:\n  full: {max_ops: 5, max_bytes: 1MiB}\n"))
	f.Add([]byte("source:\n  url: redis://a:1\n  password: secret\n"))
	f.Add([]byte("souce: 1\nmode: [x]\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		file, err := Decode("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error is not a *Error with problems: %v", err)
			}
			return
		}
		fs := syncFlags()
		if err := fs.Parse(file.Args()); err != nil {
			t.Fatalf("an accepted file's flags do not parse: %v\n%q", err, file.Args())
		}
	})
}

// TestDBMapPrefixes: db_map takes key prefixes in both forms, and they reach the filter.
func TestDBMapPrefixes(t *testing.T) {
	for _, yml := range []string{
		minimal + "filter:\n  db_map: {0: \"prefix=db0:\", 1: \"prefix=db1:\", 2: \"0:prefix=db2:\"}\n",
		minimal + "filter:\n  db_map: \"0:prefix=db0:,1:prefix=db1:,2:0:prefix=db2:\"\n",
	} {
		f, err := Decode("task.yaml", []byte(yml))
		if err != nil {
			t.Fatalf("%v\n%s", err, yml)
		}
		spec, err := f.FilterSpec()
		if err != nil {
			t.Fatal(err)
		}
		flt, err := filter.New(spec)
		if err != nil {
			t.Fatal(err)
		}
		for db, want := range map[int]string{0: "db0:", 1: "db1:", 2: "db2:"} {
			if dst, ok := flt.KeepDB(db); !ok || dst != 0 || string(flt.KeyPrefix(db)) != want {
				t.Errorf("%q: db %d → db %d (kept %v) with prefix %q; want db 0 with %q", yml, db, dst, ok, flt.KeyPrefix(db), want)
			}
		}
	}
	e := mustFail(t, minimal+"filter:\n  db_map: {1: \"prefix=\"}\n")
	if !strings.Contains(e.Error(), "empty prefix") {
		t.Errorf("an empty prefix: %v", e)
	}
}
