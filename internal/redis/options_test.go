package redis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretRedacts(t *testing.T) {
	const pw = "hunter2-secret"
	s := Secret(pw)
	type holder struct {
		Password Secret
		Opts     Options
	}
	h := holder{Password: s, Opts: Options{Addr: "h:1", Password: s}}
	outputs := map[string]string{
		"String":   s.String(),
		"GoString": s.GoString(),
		"%v":       fmt.Sprintf("%v", s),
		"%s":       fmt.Sprintf("%s", s),
		"%q":       fmt.Sprintf("%q", s),
		"%x":       fmt.Sprintf("%x", s),
		"%+v":      fmt.Sprintf("%+v", h),
		"%#v":      fmt.Sprintf("%#v", h),
		"%v opts":  fmt.Sprintf("%v", h.Opts),
	}
	//lint:ignore SA1026 the TLS config's func fields marshal as nothing; what matters is that no password appears
	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(js)
	txt, _ := s.MarshalText()
	outputs["text"] = string(txt)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, nil))
	log.Info("connect", "password", s, "opts", h.Opts)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("connect", "password", s, "holder", h)
	outputs["slog"] = logBuf.String()
	for name, out := range outputs {
		if strings.Contains(out, pw) || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s: %s", name, out)
		}
	}
	if s.Reveal() != pw {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	if got := fmt.Sprintf("%q", s); got != `"[redacted]"` {
		t.Errorf("%%q = %s", got)
	}
	if got := fmt.Sprintf("%q|%v", Secret(""), Secret("")); got != `""|` {
		t.Errorf("empty secret prints %s", got)
	}
	// Decoding config keeps working: a Secret unmarshals like a string.
	var in holder
	if err := json.Unmarshal([]byte(`{"Password":"from-config"}`), &in); err != nil || in.Password.Reveal() != "from-config" {
		t.Fatalf("unmarshal: %q %v", in.Password.Reveal(), err)
	}
}

func TestParseURL(t *testing.T) {
	cases := []struct {
		in                string
		addr, user, pass  string
		db                int
		tls               bool
		serverName, shown string
	}{
		{in: "redis://localhost:6379", addr: "localhost:6379", shown: "redis://localhost:6379"},
		{in: "redis://localhost", addr: "localhost:6379", shown: "redis://localhost:6379"},
		{in: "127.0.0.1:7000", addr: "127.0.0.1:7000", shown: "redis://127.0.0.1:7000"},
		{in: "cache.internal", addr: "cache.internal:6379", shown: "redis://cache.internal:6379"},
		{in: "redis://:pw@h:1/3", addr: "h:1", pass: "pw", db: 3, shown: "redis://:[redacted]@h:1/3"},
		{in: "redis://app:pw@h:1/0", addr: "h:1", user: "app", pass: "pw", shown: "redis://app:[redacted]@h:1"},
		{in: "redis://app@h:1/", addr: "h:1", user: "app", shown: "redis://app@h:1"},
		{in: "REDIS://h:1", addr: "h:1", shown: "redis://h:1"},
		{in: "redis://u%40x:p%3Aw%2F@h:1", addr: "h:1", user: "u@x", pass: "p:w/", shown: "redis://u%40x:[redacted]@h:1"},
		{in: "redis://u:p@ss:w/rd@h:1/2", addr: "h:1", user: "u", pass: "p@ss:w/rd", db: 2},
		{in: "redis://[::1]:6380", addr: "[::1]:6380", shown: "redis://[::1]:6380"},
		{in: "redis://[::1]", addr: "[::1]:6379"},
		{in: "rediss://user:pw@cache.example.com:6380/1", addr: "cache.example.com:6380", user: "user", pass: "pw", db: 1,
			tls: true, serverName: "cache.example.com", shown: "rediss://user:[redacted]@cache.example.com:6380/1"},
	}
	for _, tc := range cases {
		o, err := ParseURL(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if o.Addr != tc.addr || o.Username != tc.user || o.Password.Reveal() != tc.pass || o.DB != tc.db || (o.TLS != nil) != tc.tls {
			t.Errorf("%s: got addr %q user %q pass %q db %d tls %v", tc.in, o.Addr, o.Username, o.Password.Reveal(), o.DB, o.TLS != nil)
		}
		if tc.tls && (o.TLS.ServerName != tc.serverName || o.TLS.RootCAs != nil || o.TLS.InsecureSkipVerify) {
			t.Errorf("%s: TLS config %+v", tc.in, o.TLS)
		}
		if tc.shown != "" && (o.String() != tc.shown || o.Redacted() != tc.shown) {
			t.Errorf("%s: String() = %q, want %q", tc.in, o.String(), tc.shown)
		}
		if tc.pass != "" && strings.Contains(o.String(), tc.pass) {
			t.Errorf("%s: String() shows the password: %s", tc.in, o.String())
		}
	}
}

func TestParseURLErrorsHideThePassword(t *testing.T) {
	const pw = "Sup3rS3cret"
	cases := []struct{ in, msg string }{
		{"http://u:" + pw + "@h:1", `unsupported scheme "http"`},
		{"redis://u:" + pw, "invalid port"}, // '@host' forgotten: the password sits where the port goes
		{"redis://:" + pw, "no host"},
		{"redis://u:" + pw + "@", "no host"},
		{"redis://u:" + pw + "@h:99999", "invalid port"},
		{"redis://u:" + pw + "@h:1/x" + pw, "invalid database"},
		{"redis://u:" + pw + "@h:1/-1", "invalid database"},
		{"redis://u:" + pw + "%zz@h:1", "invalid %-escape in the password"},
		{"redis://u%zz:" + pw + "@h:1", "invalid %-escape in the user name"},
		{"redis://u:" + pw + "@h:1/0?password=" + pw, "query parameters"},
		{"redis://h:1:" + pw, "invalid host:port"},
		{"redis://" + pw + "[x]", "invalid host:port"},
		{"u:" + pw + "://h:1", "unsupported scheme"},
		{"", "no host"},
	}
	for _, tc := range cases {
		_, err := ParseURL(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %q", tc.in, err, tc.msg)
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "Sup3r") {
			t.Errorf("%s: error shows the password: %v", tc.in, err)
		}
	}
}
