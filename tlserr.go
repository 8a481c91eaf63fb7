package sockhop

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// tlsRejection turns a TLS alert from the peer that arrives before any of
// its bytes into a CodeTLSHandshake error. In TLS 1.3 a client finishes its
// side of the handshake before the server has checked the client's
// certificate, so a server's refusal (certificate required, bad or
// untrusted certificate) reaches the client as an alert on its first read,
// not from Handshake; without this it surfaced as a bare "remote error".
// Other errors are returned as they are.
func (c *conn) tlsRejection(err error) error {
	if _, ok := c.nc.(*tls.Conn); !ok || c.stats.bytesIn.Load() != 0 {
		return err
	}
	// crypto/tls reports a received alert as a *net.OpError whose Op is
	// "remote error" (its alert type is unexported; tls.AlertError is only
	// used with QUIC).
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" {
		return err
	}
	return newError(CodeTLSHandshake, fmt.Sprintf("TLS handshake with %s refused by the peer (does it require a client certificate, or not trust ours?)", c.remote()), err)
}
