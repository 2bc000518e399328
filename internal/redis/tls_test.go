package redis

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testCA makes a CA and a server certificate for "localhost" only (no IP address), so a
// connection by IP exercises the host name check. It returns the CA pool and the paths
// of the PEM files redis-server needs.
func testCA(t *testing.T) (pool *x509.CertPool, certFile, keyFile, caFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ferry test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	must(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	must(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	must(t, err)

	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
		return p
	}
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, write("server.crt", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", keyDER), write("ca.crt", "CERTIFICATE", caDER)
}

func TestTLS(t *testing.T) {
	pool, cert, key, ca := testCA(t)
	s := startServer(t, true, "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca,
		"--tls-auth-clients", "no", "--requirepass", "tls-pw")
	local := "localhost:" + strconv.Itoa(s.port)

	opts, err := ParseURL("rediss://:tls-pw@" + local + "/1")
	must(t, err)
	// The system roots do not know the test CA.
	_, err = Dial(context.Background(), opts)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !strings.HasPrefix(err.Error(), "tls handshake with "+local+": ") ||
		!strings.Contains(err.Error(), "not signed by a trusted CA") {
		t.Fatalf("untrusted CA: %v", err)
	}

	opts.TLS.RootCAs = pool
	c, err := Dial(context.Background(), opts)
	must(t, err)
	defer c.Close()
	if _, ok := c.NetConn().(*tls.Conn); !ok {
		t.Fatalf("NetConn is %T, want *tls.Conn", c.NetConn())
	}
	if got := do(t, c, "ECHO", "over tls"); got != "over tls" {
		t.Fatalf("ECHO = %q", got)
	}
	if info := do(t, c, "CLIENT", "INFO"); !strings.Contains(info, " db=1 ") {
		t.Fatalf("db not selected over TLS: %s", info)
	}

	// By IP the certificate (localhost only) does not match; ServerName defaults to the host.
	_, err = Dial(context.Background(), Options{Addr: s.addr, Password: "tls-pw", TLS: &tls.Config{RootCAs: pool}})
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) || !strings.Contains(err.Error(), "the certificate does not name this host") {
		t.Fatalf("host name mismatch: %v", err)
	}

	// Plain RESP to a TLS port.
	_, err = Dial(context.Background(), Options{Addr: s.addr, Password: "tls-pw", DialTimeout: 2 * time.Second})
	if err == nil || !strings.HasPrefix(err.Error(), "login on "+s.addr+": ") || !strings.Contains(err.Error(), "use rediss://") {
		t.Fatalf("plain to TLS port: %v", err)
	}
	t.Log(err)
	if strings.Contains(err.Error(), "tls-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestTLSToPlainPort(t *testing.T) {
	s := startServer(t, false)
	// The server takes the ClientHello for an inline command and waits for its newline.
	_, err := Dial(context.Background(), Options{Addr: s.addr, TLS: &tls.Config{}, DialTimeout: 300 * time.Millisecond})
	want := "tls handshake with " + s.addr + ": context deadline exceeded (is TLS enabled on this port?)"
	if err == nil || err.Error() != want {
		t.Fatalf("TLS to a plain port:\n got %v\nwant %s", err, want)
	}
}
