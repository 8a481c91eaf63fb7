package sockhop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testPKI is a small certificate world made in-process (after crypto/tls
// generate_cert.go): a CA, certificates it signed, and a second CA nobody
// trusts.
type testPKI struct {
	caPool      *x509.CertPool // trusts ca only
	otherPool   *x509.CertPool // trusts otherCA only
	server      tls.Certificate
	client      tls.Certificate
	expired     tls.Certificate // server certificate of ca, expired yesterday
	otherServer tls.Certificate // server certificate signed by otherCA
}

var (
	pkiOnce sync.Once
	pki     testPKI
	pkiErr  error
)

// certs returns the shared test PKI, made once per test binary (ECDSA keys
// are cheap, but there is no point making them per test).
func certs(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pkiErr = pki.make() })
	noErr(t, pkiErr)
	return &pki
}

type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serialMu sync.Mutex
var serialNext int64 = 1

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serialNext++
	return big.NewInt(serialNext)
}

func newCA(name string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certAuthority{cert: cert, key: key}, nil
}

// leaf issues a certificate for 127.0.0.1, ::1 and "localhost" valid
// between notBefore and notAfter.
func (ca *certAuthority) leaf(name string, usage x509.ExtKeyUsage, notBefore, notAfter time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func (p *testPKI) make() error {
	ca, err := newCA("sockhop test CA")
	if err != nil {
		return err
	}
	other, err := newCA("sockhop other CA")
	if err != nil {
		return err
	}
	now := time.Now()
	valid := func(c *certAuthority, name string, usage x509.ExtKeyUsage) (tls.Certificate, error) {
		return c.leaf(name, usage, now.Add(-time.Hour), now.Add(24*time.Hour))
	}
	if p.server, err = valid(ca, "server", x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	if p.client, err = valid(ca, "client", x509.ExtKeyUsageClientAuth); err != nil {
		return err
	}
	if p.otherServer, err = valid(other, "server", x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	if p.expired, err = ca.leaf("expired", x509.ExtKeyUsageServerAuth, now.Add(-48*time.Hour), now.Add(-24*time.Hour)); err != nil {
		return err
	}
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(ca.cert)
	p.otherPool = x509.NewCertPool()
	p.otherPool.AddCert(other.cert)
	return nil
}
