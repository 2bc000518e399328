package cluster

import (
	"testing"

	"github.com/ferrysync/ferry/internal/writer"
)

// TestNodeWindow: the masters share one writer's byte window, down to a floor, and a
// window set smaller than the floor is kept.
func TestNodeWindow(t *testing.T) {
	def := writer.DefaultMaxInFlightBytes
	for _, tc := range []struct {
		template int
		masters  int64
		want     int
	}{
		{0, 0, def},             // before any topology: the template
		{0, 1, def},             // one master: a standalone server's window
		{0, 3, def / 3},         // three share it
		{0, 20, minNodeWindow},  // many: not below the floor
		{64 << 20, 4, 16 << 20}, // a larger template is shared too
		{2 << 20, 3, 2 << 20},   // a template under the floor is not raised
		{-1, 2, def / 2},        // unset (negative) means the default
	} {
		if got := nodeWindow(tc.template, tc.masters); got != tc.want {
			t.Errorf("nodeWindow(%d, %d) = %d, want %d", tc.template, tc.masters, got, tc.want)
		}
	}
}
