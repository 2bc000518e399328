package taskfile

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/internal/filter"
)

// FlagValue is one task-file setting as a `ferry sync` flag.
type FlagValue struct {
	Name  string // the flag, without dashes ("source-password-env")
	Value string // as it would be written on the command line
	Field string // the task file field it comes from ("source.password.env")
	Line  int    // where the file sets it
}

// FlagValues are the flags equivalent to the file, in file order. Only what the file sets
// is listed (a flag's default is not repeated). Repeatable flags (include, exclude) appear
// once per value. This is the task file's definition: a file means exactly what these
// flags mean.
//
//	name                         --task
//	source.url                   --source            (target: --target, and so on)
//	source.password.env | file   --source-password-env | --source-password-file
//	source.tls.ca|cert|key       --source-tls-ca | --source-tls-cert | --source-tls-key
//	source.tls.server_name       --source-tls-server-name
//	source.tls.insecure          --source-tls-insecure
//	mode, existing, data_dir     --mode, --existing, --data-dir
//	forward_publish              --forward-publish
//	big_key_threshold            --big-key-threshold (bytes)
//	status_addr                  --status-addr
//	delivery, on_full_resync     --delivery, --on-full-resync
//	retry_timeout                --retry-timeout (Go duration)
//	source_timeout               --source-timeout (Go duration)
//	filter.dbs, filter.db_map    --dbs, --db-map
//	filter.allow_db_merge        --db-merge
//	filter.include, .exclude     --include, --exclude (one flag per pattern)
//	filter.types                 --types (comma-separated)
//	filter.exclude_commands      --exclude-commands (comma-separated)
//	throttle.full.max_ops        --full-max-ops      (bytes: --full-max-bytes)
//	throttle.incremental.max_ops --incr-max-ops      (bytes: --incr-max-bytes)
func (f *File) FlagValues() []FlagValue {
	var out []FlagValue
	add := func(flag, field, value string) {
		out = append(out, FlagValue{Name: flag, Value: value, Field: field, Line: f.line(field)})
	}
	str := func(flag, field, v string) {
		if v != "" {
			add(flag, field, v)
		}
	}
	boolean := func(flag, field string, v bool) {
		if v {
			add(flag, field, "true")
		}
	}
	num := func(flag, field string, v int64) {
		if v != 0 {
			add(flag, field, strconv.FormatInt(v, 10))
		}
	}
	str("task", "name", f.Name)
	for _, side := range []struct {
		name string
		e    *Endpoint
	}{{"source", &f.Source}, {"target", &f.Target}} {
		s, e := side.name, side.e
		str(s, s+".url", e.URL)
		if e.Password != nil {
			str(s+"-password-env", s+".password.env", e.Password.Env)
			str(s+"-password-file", s+".password.file", e.Password.File)
		}
		if e.TLS != nil {
			str(s+"-tls-ca", s+".tls.ca", e.TLS.CA)
			str(s+"-tls-cert", s+".tls.cert", e.TLS.Cert)
			str(s+"-tls-key", s+".tls.key", e.TLS.Key)
			str(s+"-tls-server-name", s+".tls.server_name", e.TLS.ServerName)
			boolean(s+"-tls-insecure", s+".tls.insecure", e.TLS.Insecure)
		}
	}
	str("mode", "mode", f.Mode)
	str("existing", "existing", f.Existing)
	str("data-dir", "data_dir", f.DataDir)
	boolean("forward-publish", "forward_publish", f.ForwardPublish)
	num("big-key-threshold", "big_key_threshold", int64(f.BigKeyThreshold))
	str("status-addr", "status_addr", f.StatusAddr)
	str("delivery", "delivery", f.Delivery)
	str("on-full-resync", "on_full_resync", f.OnFullResync)
	if f.RetryTimeout != 0 {
		add("retry-timeout", "retry_timeout", f.RetryTimeout.String())
	}
	if f.SourceTimeout != 0 {
		add("source-timeout", "source_timeout", f.SourceTimeout.String())
	}
	fl := &f.Filter
	if fl.DBs != nil {
		add("dbs", "filter.dbs", filter.FormatDBs(fl.DBs))
	}
	if !fl.DBMap.IsZero() {
		add("db-map", "filter.db_map", fl.DBMap.String())
	}
	boolean("db-merge", "filter.allow_db_merge", fl.AllowDBMerge)
	for i, p := range fl.Include {
		out = append(out, FlagValue{Name: "include", Value: p, Field: fmt.Sprintf("filter.include[%d]", i), Line: f.itemLine("filter.include", i)})
	}
	for i, p := range fl.Exclude {
		out = append(out, FlagValue{Name: "exclude", Value: p, Field: fmt.Sprintf("filter.exclude[%d]", i), Line: f.itemLine("filter.exclude", i)})
	}
	if len(fl.Types) > 0 {
		add("types", "filter.types", strings.Join(fl.Types, ","))
	}
	if len(fl.ExcludeCommands) > 0 {
		add("exclude-commands", "filter.exclude_commands", strings.Join(fl.ExcludeCommands, ","))
	}
	num("full-max-ops", "throttle.full.max_ops", f.Throttle.Full.MaxOps)
	num("full-max-bytes", "throttle.full.max_bytes", int64(f.Throttle.Full.MaxBytes))
	num("incr-max-ops", "throttle.incremental.max_ops", f.Throttle.Incremental.MaxOps)
	num("incr-max-bytes", "throttle.incremental.max_bytes", int64(f.Throttle.Incremental.MaxBytes))
	return out
}

// Args are FlagValues as command-line arguments ("--mode=full"), for tests and for showing
// a user the command a file stands for. Secrets are references, so nothing secret is in
// them.
func (f *File) Args() []string {
	var out []string
	for _, v := range f.FlagValues() {
		out = append(out, "--"+v.Name+"="+v.Value)
	}
	return out
}

// Apply sets the file's values on a command's flags. A flag given on the command line
// wins over the file (it is left as it is). A setting whose flag fs does not have is an
// error naming its line, so that no part of a file is silently ignored.
func (f *File) Apply(fs *pflag.FlagSet) error {
	var probs []Problem
	for _, v := range f.FlagValues() {
		fl := fs.Lookup(v.Name)
		switch {
		case fl == nil:
			probs = append(probs, Problem{Line: v.Line, Msg: fmt.Sprintf("%s: this build of ferry has no --%s flag to apply it to", v.Field, v.Name)})
		case fl.Changed && !f.setByFile(fs, v.Name):
			// Given on the command line: it overrides the file.
		default:
			if err := fs.Set(v.Name, v.Value); err != nil {
				probs = append(probs, Problem{Line: v.Line, Msg: fmt.Sprintf("%s: --%s: %v", v.Field, v.Name, err)})
				continue
			}
			markSetByFile(fs, v.Name)
		}
	}
	if len(probs) > 0 {
		return &Error{Path: f.path, Problems: probs}
	}
	return nil
}

// fileAnnotation marks flags Apply has set, so that a repeatable flag set several times
// from the file is not mistaken for one given on the command line.
const fileAnnotation = "ferry-task-file"

func markSetByFile(fs *pflag.FlagSet, name string) {
	_ = fs.SetAnnotation(name, fileAnnotation, []string{"true"})
}

func (f *File) setByFile(fs *pflag.FlagSet, name string) bool {
	fl := fs.Lookup(name)
	return fl != nil && len(fl.Annotations[fileAnnotation]) > 0
}
