package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Connection defaults.
const (
	// DefaultPort is used when an address or URL names no port.
	DefaultPort = "6379"
	// DefaultDialTimeout bounds connecting, the TLS handshake and the AUTH/SELECT/SETNAME
	// round trip together.
	DefaultDialTimeout = 10 * time.Second
	// DefaultIOTimeout bounds each command's write and read when its context has no deadline.
	DefaultIOTimeout = 30 * time.Second
)

// Options says how to reach and log in to one Redis server.
type Options struct {
	Addr     string // host:port
	Username string // ACL user (Redis 6+); empty for the default user
	Password Secret // empty: no AUTH
	// TLS, when set, makes the connection TLS. An empty ServerName is filled in with the
	// host of Addr. ParseURL sets it for rediss:// with the system roots.
	TLS *tls.Config
	DB  int // selected with SELECT after connecting when not 0
	// DialTimeout bounds the whole of Dial: TCP connect, TLS handshake and the login
	// commands. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// IOTimeout bounds a command (write and reply) whose context has no deadline, and each
	// Flush and Receive. Default DefaultIOTimeout; negative means no timeout.
	IOTimeout time.Duration
	// ClientName is set with CLIENT SETNAME so the connection is recognisable in CLIENT
	// LIST; servers that lack the command are tolerated.
	ClientName string
}

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.IOTimeout == 0 {
		o.IOTimeout = DefaultIOTimeout
	}
	return o
}

// String renders the options as a URL with the password redacted, e.g.
// "rediss://app:[redacted]@cache:6380/2". It is what logs and errors show.
func (o Options) String() string {
	var b strings.Builder
	if o.TLS != nil {
		b.WriteString("rediss://")
	} else {
		b.WriteString("redis://")
	}
	if o.Username != "" || o.Password != "" {
		b.WriteString(url.User(o.Username).String())
		if o.Password != "" {
			b.WriteString(":" + redacted)
		}
		b.WriteByte('@')
	}
	b.WriteString(o.Addr)
	if o.DB != 0 {
		b.WriteString("/" + strconv.Itoa(o.DB))
	}
	return b.String()
}

// Redacted is String, for call sites that want to say so.
func (o Options) Redacted() string { return o.String() }

// LogValue logs the options as their redacted URL.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// ParseURL parses redis://[user[:password]@]host[:port][/db] and rediss://… (TLS with
// the system roots, verified against host). A bare host[:port] means redis://. The port
// defaults to 6379. User and password may be percent-encoded; an unencoded '@' in the
// password is tolerated because the last '@' ends it. Errors quote no part of s but the
// scheme: a mistyped URL (a forgotten '@', say) can put the password anywhere.
func ParseURL(s string) (Options, error) {
	var o Options
	rest := s
	tlsOn := false
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		switch strings.ToLower(scheme) {
		case "redis":
		case "rediss":
			tlsOn = true
		default:
			if len(scheme) > 10 || strings.ContainsAny(scheme, ":@/") {
				return o, errors.New("parse redis URL: unsupported scheme (use redis:// or rediss://)")
			}
			return o, fmt.Errorf("parse redis URL: unsupported scheme %q (use redis:// or rediss://)", scheme)
		}
		rest = after
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, pass, hasPass := strings.Cut(rest[:i], ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return Options{}, errors.New("parse redis URL: invalid %-escape in the user name")
		}
		if hasPass {
			p, err := url.PathUnescape(pass)
			if err != nil {
				return Options{}, errors.New("parse redis URL: invalid %-escape in the password")
			}
			o.Password = Secret(p)
		}
		rest = rest[i+1:]
	}
	hostport, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		hostport, path = rest[:i], rest[i:]
	}
	if strings.ContainsAny(path, "?#") {
		return Options{}, errors.New("parse redis URL: query parameters and fragments are not supported")
	}
	if hostport == "" {
		return Options{}, errors.New("parse redis URL: no host (expected redis://host:port)")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port: accept "host", "::1" and "[::1]".
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), DefaultPort
		if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
			return Options{}, errors.New("parse redis URL: invalid host:port (expected redis://host:port)")
		}
	}
	if host == "" {
		return Options{}, errors.New("parse redis URL: no host (expected redis://host:port)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Options{}, errors.New("parse redis URL: invalid port (expected a number from 1 to 65535)")
	}
	o.Addr = net.JoinHostPort(host, port)
	if db := strings.TrimPrefix(path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return Options{}, errors.New("parse redis URL: invalid database (expected a number, as in redis://host:port/0)")
		}
		o.DB = n
	}
	if tlsOn {
		o.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return o, nil
}
