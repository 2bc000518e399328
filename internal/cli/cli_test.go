package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, errs := run(t, "version")
	if code != ExitOK || !strings.HasPrefix(out, "ferry ") {
		t.Fatalf("version: code %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = run(t, "version", "--json")
	var info map[string]string
	if code != ExitOK || json.Unmarshal([]byte(out), &info) != nil || info["version"] == "" || info["go"] == "" {
		t.Fatalf("version --json: code %d, output %q", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"no-such-command"}, ExitUsage, "unknown command"},
		{[]string{"version", "--no-such-flag"}, ExitUsage, "unknown flag"},
		{[]string{"version", "extra-arg"}, ExitUsage, "unknown command"},
		{[]string{"--log-format", "xml", "version"}, ExitUsage, "--log-format"},
		{[]string{"--log-level", "loud", "version"}, ExitUsage, "--log-level"},
		{[]string{"--log-format", "json", "--log-level", "debug", "version"}, ExitOK, ""},
	}
	for _, c := range cases {
		code, _, errs := run(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("ferry %s: code %d (want %d), stderr %q (want it to contain %q)", strings.Join(c.args, " "), code, c.code, errs, c.msg)
		}
	}
}
