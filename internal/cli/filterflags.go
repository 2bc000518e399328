package cli

import (
	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/internal/filter"
)

// filterFlags are the object-selection flags shared by sync and rdb restore; the task file's
// filter section sets the same flags (docs/filters.md has the rules).
type filterFlags struct {
	s filter.Strings
}

func addFilterFlags(fs *pflag.FlagSet) *filterFlags {
	f := &filterFlags{}
	fs.StringVar(&f.s.DBs, "dbs", "", "source databases to copy, e.g. 0,3,5-9 (0-255; default all)")
	fs.StringVar(&f.s.DBMap, "db-map", "", "source:destination database pairs, e.g. 3:0,4:1 (unmapped databases keep their number); N:prefix=P sends database N to 0 with every key renamed P<key>, e.g. 0:prefix=db0:,1:prefix=db1: (N:M:prefix=P into database M)")
	fs.BoolVar(&f.s.AllowDBMerge, "db-merge", false, "allow two source databases to land in one destination database")
	// StringArray, not StringSlice: a regular expression may hold a comma.
	fs.StringArrayVar(&f.s.Include, "include", nil, "copy only keys matching this pattern (prefix; glob if it has * ? [ \\; p: g: re: force prefix, glob, regex); repeatable")
	fs.StringArrayVar(&f.s.Exclude, "exclude", nil, "never copy keys matching this pattern (as --include); repeatable")
	fs.StringVar(&f.s.Types, "types", "", "copy only these types: string,list,set,zset,hash,stream,module (default all)")
	fs.StringVar(&f.s.ExcludeCommands, "exclude-commands", "", "never forward these stream commands, e.g. flushall,flushdb")
	return f
}

// filter compiles the flags; nil when they select everything unchanged.
func (f *filterFlags) filter() (*filter.Filter, error) {
	spec, err := filter.ParseSpec(f.s)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	flt, err := filter.New(spec)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	if flt.Identity() {
		return nil, nil
	}
	return flt, nil
}
