package precheck

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// TestUnreachableSource: a refused connection fails the source's connect check at once,
// with the address and what to check, and every check that needs the source is skipped;
// the target's own checks still run.
func TestUnreachableSource(t *testing.T) {
	t.Parallel()
	dst := testutil.StartServer(t)
	bad := closedPort(t)
	start := time.Now()
	rep := runCheck(t, Config{Source: redis.Options{Addr: bad}, Target: addr(dst), RateSample: fastRate})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("precheck with an unreachable source took %s", d)
	}
	expect(t, rep, SideSource, CheckConnect, Fail, bad, "connection refused", "nothing accepts connections at "+bad, "--source")
	for _, c := range rep.Checks {
		if c.Side == SideSource && c.Name != CheckConnect || c.Side == SideBoth || c.Name == CheckMemory {
			if c.Result != Skip || !strings.Contains(c.Found, "skipped: source unreachable") {
				t.Errorf("%s %s: %s %q, want skip because the source is unreachable", c.Side, c.Name, c.Result, c.Found)
			}
		}
	}
	expect(t, rep, SideTarget, CheckConnect, Pass)
	expect(t, rep, SideTarget, CheckEviction, Pass)
	if rep.OK(true) {
		t.Error("report is OK with an unreachable source")
	}
}

// TestAuthFailures: a wrong password and a missing one each fail connect with the
// server's reply and what to change in the URL, never the password itself.
func TestAuthFailures(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	// Set after the start: the harness's readiness PING has no password.
	dst.Do(t, "CONFIG", "SET", "requirepass", "s3cret-pass")

	rep := runCheck(t, Config{Source: addr(src), Target: redis.Options{Addr: dst.Addr(), Password: "wrong-pass"}, RateSample: fastRate})
	c := expect(t, rep, SideTarget, CheckConnect, Fail, "WRONGPASS", "check the user name (\"default\") and password in the --target URL")
	if strings.Contains(c.Found+c.Advice, "wrong-pass") {
		t.Errorf("the password leaked into the report: %q / %q", c.Found, c.Advice)
	}
	expect(t, rep, SideTarget, CheckACL, Skip, "skipped: cannot log in to the target")

	rep = runCheck(t, Config{Source: addr(src), Target: addr(dst), RateSample: fastRate})
	expect(t, rep, SideTarget, CheckConnect, Fail, "NOAUTH", "the server requires a password: put it in the --target URL")

	rep = runCheck(t, Config{Source: addr(src), Target: redis.Options{Addr: dst.Addr(), Password: "s3cret-pass"}, RateSample: fastRate})
	expect(t, rep, SideTarget, CheckConnect, Pass)
}

// testCA is a certificate authority made for one test, and a server certificate it
// signed for 127.0.0.1.
type testCA struct {
	pool             *x509.CertPool
	caFile, certFile string
	keyFile          string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
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
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA{
		pool:     x509.NewCertPool(),
		caFile:   filepath.Join(dir, "ca.crt"),
		certFile: filepath.Join(dir, "server.crt"),
		keyFile:  filepath.Join(dir, "server.key"),
	}
	ca.pool.AddCert(caCert)
	for path, block := range map[string]*pem.Block{
		ca.caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		ca.certFile: {Type: "CERTIFICATE", Bytes: der},
		ca.keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

// TestTLS: rediss:// to the TLS port passes and names the TLS version; rediss:// to the
// plain port and redis:// to the TLS port each fail with the scheme to use instead; a
// certificate from an unknown CA fails with what to fix.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	tlsAddr := closedPort(t) // free now; redis-server binds it below
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	dst := testutil.StartServer(t, "--tls-port", tlsPort, "--tls-cert-file", ca.certFile, "--tls-key-file", ca.keyFile,
		"--tls-ca-cert-file", ca.caFile, "--tls-auth-clients", "no")
	src := testutil.StartServer(t)
	trusted := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}

	rep := runCheck(t, Config{Source: addr(src), Target: redis.Options{Addr: tlsAddr, TLS: trusted}, RateSample: fastRate})
	expect(t, rep, SideTarget, CheckConnect, Pass, "TLS 1.3")
	expect(t, rep, SideTarget, CheckACL, Pass)

	// rediss:// to the plain port.
	rep = runCheck(t, Config{Source: addr(src), Target: redis.Options{Addr: dst.Addr(), TLS: trusted}, RateSample: fastRate})
	expect(t, rep, SideTarget, CheckConnect, Fail, dst.Addr(), "does not speak TLS: use redis://")

	// redis:// to the TLS port.
	rep = runCheck(t, Config{Source: addr(src), Target: redis.Options{Addr: tlsAddr}, RateSample: fastRate})
	expect(t, rep, SideTarget, CheckConnect, Fail, tlsAddr+" expects TLS: use rediss://"+tlsAddr)

	// A CA the client does not trust.
	other := newTestCA(t)
	rep = runCheck(t, Config{Source: addr(src), Target: redis.Options{Addr: tlsAddr, TLS: &tls.Config{RootCAs: other.pool}}, RateSample: fastRate})
	expect(t, rep, SideTarget, CheckConnect, Fail, "certificate", "signed by a CA this machine trusts")
	_ = strconv.Itoa
}
