package sockhop

import (
	"crypto/tls"
	"testing"
)

// TestTLSRejectionCode: every TLS refusal carries CodeTLSHandshake on both
// ends, whichever end refused and whenever the refusal arrives. In TLS 1.3
// a server's refusal of the client's certificate reaches the client as an
// alert after its own handshake finished (on the first read); in TLS 1.2
// it reaches the client's Handshake. The server reports its side through
// OnError.
func TestTLSRejectionCode(t *testing.T) {
	p := certs(t)
	mutual := func(v uint16) *tls.Config {
		return &tls.Config{
			Certificates: []tls.Certificate{p.server},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    p.caPool,
			MaxVersion:   v,
		}
	}
	cases := []struct {
		name   string
		server func(v uint16) *tls.Config
		client *tls.Config
	}{
		// The server refuses: no certificate, or one it does not trust.
		{"client without certificate", mutual, &tls.Config{RootCAs: p.caPool}},
		{"client certificate of another CA", mutual, &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.otherServer}}},
		// The client refuses the server's certificate.
		{"server certificate of another CA", func(v uint16) *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{p.otherServer}, MaxVersion: v}
		}, &tls.Config{RootCAs: p.caPool}},
	}
	for _, v := range []struct {
		name string
		v    uint16
	}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}} {
		for _, tc := range cases {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				e := newTLSEnv(t, tc.server(v.v), ServerOptions{})
				c := e.client(t, tc.client, ClientOptions{})
				err := c.Start(testCtx(t))
				if err == nil {
					t.Fatal("Start succeeded")
				}
				t.Logf("client: %v", err)
				errorIs(t, err, &Error{Code: CodeTLSHandshake})
				errorIs(t, err, ErrTLSHandshake)
				eventually(t, "the server reports a TLS handshake failure", func() bool { return e.errs.has(CodeTLSHandshake) })
				equal(t, "sessions started", e.sessions.Load(), 0)
				equal(t, "messages delivered", e.delivered.Load(), 0)
			})
		}
	}
}
