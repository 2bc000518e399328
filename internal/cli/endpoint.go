package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/internal/redis"
)

// endpointFlags are the flags that say how to reach one side (source or target): a URL,
// a password from the environment or a file instead of the URL, and TLS material.
type endpointFlags struct {
	side         string // "source" or "target"
	url          string
	passwordEnv  string
	passwordFile string
	tlsCA        string
	tlsCert      string
	tlsKey       string
	tlsServer    string
	tlsInsecure  bool
}

func addEndpointFlags(fs *pflag.FlagSet, side string) *endpointFlags {
	e := &endpointFlags{side: side}
	fs.StringVar(&e.url, side, "", side+" URL: redis://[user[:password]@]host:port[/db], rediss:// for TLS")
	fs.StringVar(&e.passwordEnv, side+"-password-env", "", "read the "+side+" password from this environment variable (default FERRY_"+strings.ToUpper(side)+"_PASSWORD when set)")
	fs.StringVar(&e.passwordFile, side+"-password-file", "", "read the "+side+" password from this file (first line)")
	fs.StringVar(&e.tlsCA, side+"-tls-ca", "", "PEM file of CAs that sign the "+side+"'s certificate (default: system roots)")
	fs.StringVar(&e.tlsCert, side+"-tls-cert", "", "PEM client certificate for the "+side)
	fs.StringVar(&e.tlsKey, side+"-tls-key", "", "PEM client key for the "+side)
	fs.StringVar(&e.tlsServer, side+"-tls-server-name", "", "name to verify the "+side+"'s certificate against (default: the host)")
	fs.BoolVar(&e.tlsInsecure, side+"-tls-insecure", false, "do not verify the "+side+"'s certificate (unsafe; for tests only)")
	return e
}

// options turns the flags into connection options. Errors never include the password.
func (e *endpointFlags) options() (redis.Options, error) {
	if e.url == "" {
		return redis.Options{}, usageErrorf("--%s is required (redis://host:port)", e.side)
	}
	o, err := redis.ParseURL(e.url)
	if err != nil {
		return redis.Options{}, usageErrorf("--%s: %v", e.side, err)
	}
	pw, err := e.password()
	if err != nil {
		return redis.Options{}, err
	}
	if pw != "" {
		if o.Password != "" {
			return redis.Options{}, usageErrorf("--%s: the password is given twice (in the URL and in a file or environment variable); keep one", e.side)
		}
		o.Password = redis.Secret(pw)
	}
	anyTLS := e.tlsCA != "" || e.tlsCert != "" || e.tlsKey != "" || e.tlsServer != "" || e.tlsInsecure
	if anyTLS && o.TLS == nil {
		return redis.Options{}, usageErrorf("--%s: TLS flags given for a redis:// URL; use rediss:// to connect with TLS", e.side)
	}
	if o.TLS != nil {
		cfg := o.TLS.Clone()
		if e.tlsServer != "" {
			cfg.ServerName = e.tlsServer
		}
		cfg.InsecureSkipVerify = e.tlsInsecure
		if e.tlsCA != "" {
			pem, err := os.ReadFile(e.tlsCA)
			if err != nil {
				return redis.Options{}, fmt.Errorf("--%s-tls-ca: %w", e.side, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return redis.Options{}, fmt.Errorf("--%s-tls-ca %s: no PEM certificate found", e.side, e.tlsCA)
			}
			cfg.RootCAs = pool
		}
		if (e.tlsCert == "") != (e.tlsKey == "") {
			return redis.Options{}, usageErrorf("--%s-tls-cert and --%s-tls-key go together", e.side, e.side)
		}
		if e.tlsCert != "" {
			pair, err := tls.LoadX509KeyPair(e.tlsCert, e.tlsKey)
			if err != nil {
				return redis.Options{}, fmt.Errorf("--%s-tls-cert/--%s-tls-key: %w", e.side, e.side, err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		o.TLS = cfg
	}
	return o, nil
}

func (e *endpointFlags) password() (string, error) {
	switch {
	case e.passwordFile != "":
		b, err := os.ReadFile(e.passwordFile)
		if err != nil {
			return "", fmt.Errorf("--%s-password-file: %w", e.side, err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimRight(line, "\r"), nil
	case e.passwordEnv != "":
		v, ok := os.LookupEnv(e.passwordEnv)
		if !ok {
			return "", usageErrorf("--%s-password-env: environment variable %s is not set", e.side, e.passwordEnv)
		}
		return v, nil
	}
	return os.Getenv("FERRY_" + strings.ToUpper(e.side) + "_PASSWORD"), nil
}
