// Package buildinfo reports the version Ferry was built as.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time with -ldflags "-X github.com/ferrysync/ferry/internal/buildinfo.Version=v1.2.3".
// It is a variable only because the linker can set nothing else; nothing assigns it at run time.
var Version = "dev"

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go"`
	Platform  string `json:"platform"`
}

// Read returns the build information of the running binary.
func Read() Info {
	info := Info{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Commit = s.Value
			}
		}
	}
	return info
}
