package sockhop

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsEnv is a TCP server serving TLS, counting what reaches its handlers
// and the errors it reports.
type tlsEnv struct {
	srv       *Server
	delivered atomic.Int32 // application messages seen by the handlers
	errs      errLog
	tlsFails  atomic.Int32 // TLS handshakes the server reported as failed
	sessions  atomic.Int32 // sessions started (after a TLS handshake)
}

func newTLSEnv(t *testing.T, cfg *tls.Config, o ServerOptions) *tlsEnv {
	t.Helper()
	e := &tlsEnv{}
	o.TLSConfig = cfg
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 3 * time.Second // only reached on failure; CI machines are busy
	}
	o.OnSessionStart = func(context.Context, *Session) error { e.sessions.Add(1); return nil }
	o.OnError = func(s *Session, err error) {
		e.errs.add(s, err)
		// Without a session, only a failed TLS handshake is reported here
		// (MaxConnections and accept errors cannot happen in these tests).
		// The error has no Code to tell it by, and crypto/tls returns plain
		// errors for most failures ("tls: client didn't provide a
		// certificate"), so the test counts them all.
		if s == nil {
			e.tlsFails.Add(1)
		}
	}
	e.srv = startServer(t, transports[0], o)
	e.srv.HandleDefault(func(ctx context.Context, m *Message) error {
		e.delivered.Add(1)
		if m.IsRequest() {
			return m.Reply(ctx, m.JSON())
		}
		return nil
	})
	return e
}

func (e *tlsEnv) client(t *testing.T, cfg *tls.Config, o ClientOptions) *Client {
	o.Addr = e.srv.Addr().String()
	o.TLSConfig = cfg
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 2 * time.Second
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 3 * time.Second // only reached on failure; CI machines are busy
	}
	c := NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange checks that a handshaked client's messages and requests flow.
func (e *tlsEnv) exchange(t *testing.T, c *Client) {
	t.Helper()
	before := e.delivered.Load()
	noErr(t, c.Send(testCtx(t), "hello"))
	r, err := c.Request(testCtx(t), Named{Type: "Echo", Data: "over TLS"})
	noErr(t, err)
	equal(t, "reply", string(r.JSON()), `"over TLS"`)
	eventually(t, "both messages delivered", func() bool { return e.delivered.Load() == before+2 })
}

// TestTLSMessagesAndRequests: with the server's CA, Start completes the
// Sockhop handshake inside TLS, binary mode both ways, and traffic flows
// (RELIABILITY.md R13).
func TestTLSMessagesAndRequests(t *testing.T) {
	p := certs(t)
	e := newTLSEnv(t, &tls.Config{Certificates: []tls.Certificate{p.server}}, ServerOptions{})
	for _, name := range []string{"127.0.0.1", "localhost"} {
		t.Run("server name "+name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: p.caPool}
			if name != "127.0.0.1" {
				cfg.ServerName = name // otherwise the host of Addr
			}
			c := e.client(t, cfg, ClientOptions{})
			noErr(t, c.Start(testCtx(t)))
			eventually(t, "binary both ways", func() bool {
				st := c.State()
				return st.TxBinary && st.RxBinary && st.HandshakeOK
			})
			e.exchange(t, c)
			noErr(t, c.Close())
		})
	}
	equal(t, "TLS failures reported", e.tlsFails.Load(), 0)
}

// TestTLSMutual: a server that requires client certificates serves a
// client with one and refuses one without, before any message.
func TestTLSMutual(t *testing.T) {
	p := certs(t)
	e := newTLSEnv(t, &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.caPool,
	}, ServerOptions{})

	t.Run("with certificate", func(t *testing.T) {
		c := e.client(t, &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.client}}, ClientOptions{})
		noErr(t, c.Start(testCtx(t)))
		e.exchange(t, c)
		noErr(t, c.Close())
	})
	t.Run("without certificate", func(t *testing.T) {
		// The session of the client above ends after its Close returns.
		eventually(t, "no session left", func() bool { return len(e.srv.Sessions()) == 0 })
		before := e.delivered.Load()
		c := e.client(t, &tls.Config{RootCAs: p.caPool}, ClientOptions{})
		begin := time.Now()
		err := c.Start(testCtx(t))
		took := time.Since(begin)
		if err == nil {
			t.Fatal("Start succeeded without the required client certificate")
		}
		// In TLS 1.3 the client finishes its side of the TLS handshake
		// before the server checks its certificate, so the refusal comes
		// as an alert on the first read, after Start has begun the Sockhop
		// handshake (a reset is possible too).
		t.Logf("Start failed after %s: %v", took, err)
		if took > 2*time.Second {
			t.Fatalf("Start took %s, more than the connect timeout", took)
		}
		eventually(t, "the server reports the TLS failure", func() bool { return e.tlsFails.Load() >= 1 })
		equal(t, "messages delivered", e.delivered.Load(), before)
		equal(t, "sessions", len(e.srv.Sessions()), 0)
	})
}

// TestTLSCertificateFailures: a certificate the client must not accept makes
// Start fail with the x509 reason within the connect timeout; nothing
// reaches the server's handlers and no session starts (R13 a).
func TestTLSCertificateFailures(t *testing.T) {
	p := certs(t)
	cases := []struct {
		name   string
		server tls.Certificate
		client *tls.Config
		check  func(error) bool
	}{
		{"wrong CA", p.server, &tls.Config{RootCAs: p.otherPool}, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{"certificate of another CA", p.otherServer, &tls.Config{RootCAs: p.caPool}, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{"wrong server name", p.server, &tls.Config{RootCAs: p.caPool, ServerName: "wrong.example"}, func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
		{"expired", p.expired, &tls.Config{RootCAs: p.caPool}, func(err error) bool {
			var ci x509.CertificateInvalidError
			return errors.As(err, &ci) && ci.Reason == x509.Expired
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTLSEnv(t, &tls.Config{Certificates: []tls.Certificate{tc.server}}, ServerOptions{})
			c := e.client(t, tc.client, ClientOptions{})
			begin := time.Now()
			err := c.Start(testCtx(t))
			took := time.Since(begin)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if !tc.check(err) {
				t.Fatalf("Start failed with %v (%T), not the expected certificate error", err, err)
			}
			var cv *tls.CertificateVerificationError
			if !errors.As(err, &cv) {
				t.Errorf("error %v does not wrap *tls.CertificateVerificationError", err)
			}
			if took > time.Second {
				t.Fatalf("Start took %s (connect timeout 2 s)", took)
			}
			eventually(t, "the server reports the TLS failure", func() bool { return e.tlsFails.Load() == 1 })
			equal(t, "messages delivered", e.delivered.Load(), 0)
			equal(t, "sessions started", e.sessions.Load(), 0)
			equal(t, "client connected", c.State().Connected, false)
		})
	}
}

// TestTLSReconnectPace: with AutoReconnect, a certificate that keeps failing
// is retried at most once per ReconnectInterval (R13 a).
func TestTLSReconnectPace(t *testing.T) {
	p := certs(t)
	e := newTLSEnv(t, &tls.Config{Certificates: []tls.Certificate{p.server}}, ServerOptions{})
	const interval = 100 * time.Millisecond
	c := e.client(t, &tls.Config{RootCAs: p.otherPool}, ClientOptions{AutoReconnect: true, ReconnectInterval: interval})
	begin := time.Now()
	if err := c.Start(testCtx(t)); err == nil {
		t.Fatal("Start succeeded with the wrong CA")
	}
	time.Sleep(450 * time.Millisecond)
	attempts := e.tlsFails.Load()
	took := time.Since(begin)
	noErr(t, c.Close())
	// The first attempt plus one per interval (each wait is the interval
	// plus up to 10% jitter).
	limit := 1 + int32(took/interval)
	t.Logf("%d TLS handshakes in %s (interval %s)", attempts, took, interval)
	if attempts > limit {
		t.Fatalf("%d attempts in %s: more than one per %s", attempts, took, interval)
	}
	if attempts < 2 {
		t.Logf("note: no retry after a failed first Start (%d attempts)", attempts)
	}
	equal(t, "messages delivered", e.delivered.Load(), 0)
}

// TestTLSPlaintextMismatch: plaintext against TLS and TLS against plaintext
// fail at once on both sides (not by a timeout: the Sockhop handshake
// timeout is 1.5 s and the connect timeout 2 s here), nothing panics, and
// the server goes on serving good clients (R13 c).
func TestTLSPlaintextMismatch(t *testing.T) {
	p := certs(t)
	const fast = 500 * time.Millisecond
	slow := ConnOptions{HandshakeTimeout: 1500 * time.Millisecond}

	t.Run("plaintext client, TLS server", func(t *testing.T) {
		e := newTLSEnv(t, &tls.Config{Certificates: []tls.Certificate{p.server}},
			ServerOptions{TLSHandshakeTimeout: time.Second, ConnOptions: slow})
		c := e.client(t, nil, ClientOptions{ConnOptions: slow})
		begin := time.Now()
		err := c.Start(testCtx(t))
		took := time.Since(begin)
		if err == nil {
			t.Fatal("a plaintext Start against a TLS server succeeded")
		}
		t.Logf("client: Start failed after %s: %v", took, err)
		if took > fast {
			t.Fatalf("Start took %s, want a fast failure", took)
		}
		if errors.Is(err, ErrHandshakeTimeout) {
			t.Fatal("failed by the handshake timeout, not by the server closing")
		}
		eventually(t, "the server reports the TLS failure", func() bool { return e.tlsFails.Load() == 1 })
		if took := time.Since(begin); took > fast {
			t.Fatalf("server side failed after %s", took)
		}
		equal(t, "messages delivered", e.delivered.Load(), 0)
		good := e.client(t, &tls.Config{RootCAs: p.caPool}, ClientOptions{})
		noErr(t, good.Start(testCtx(t)))
		e.exchange(t, good)
	})

	t.Run("TLS client, plaintext server", func(t *testing.T) {
		ended := make(chan error, 4)
		var delivered atomic.Int32
		srv := startServer(t, transports[0], ServerOptions{ConnOptions: slow,
			OnSessionEnd: func(_ *Session, err error) { ended <- err }})
		srv.HandleDefault(func(ctx context.Context, m *Message) error {
			delivered.Add(1)
			if m.IsRequest() {
				return m.Reply(ctx, m.JSON())
			}
			return nil
		})
		c := NewClient(ClientOptions{Addr: srv.Addr().String(), TLSConfig: &tls.Config{RootCAs: p.caPool},
			ConnectTimeout: 2 * time.Second, ConnOptions: slow})
		defer c.Close()
		begin := time.Now()
		err := c.Start(testCtx(t))
		took := time.Since(begin)
		if err == nil {
			t.Fatal("a TLS Start against a plaintext server succeeded")
		}
		// The server's first bytes are its handshake line, which the
		// client's TLS layer rejects as a record header at once.
		var rh tls.RecordHeaderError
		if !errors.As(err, &rh) {
			t.Errorf("error %v is not a tls.RecordHeaderError", err)
		}
		t.Logf("client: Start failed after %s: %v", took, err)
		if took > fast {
			t.Fatalf("Start took %s, want a fast failure", took)
		}
		serr := recv(t, ended, "the server's session end")
		t.Logf("server: session ended after %s: %v", time.Since(begin), serr)
		if took := time.Since(begin); took > fast {
			t.Fatalf("server side ended after %s", took)
		}
		equal(t, "messages delivered", delivered.Load(), 0)
		good := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: slow})
		defer good.Close()
		noErr(t, good.Start(testCtx(t)))
		r, err := good.Request(testCtx(t), "still serving")
		noErr(t, err)
		equal(t, "reply", string(r.JSON()), `"still serving"`)
	})
}

// TestTLSJunk: connections that write 1 MiB of junk, stall inside a TLS
// record or send nothing are all closed within TLSHandshakeTimeout + 0.5 s,
// and the server keeps serving (R13 b, scaled down from 100 connections).
func TestTLSJunk(t *testing.T) {
	p := certs(t)
	const hsTimeout = 300 * time.Millisecond
	e := newTLSEnv(t, &tls.Config{Certificates: []tls.Certificate{p.server}},
		ServerOptions{TLSHandshakeTimeout: hsTimeout})
	junk := make([]byte, 1<<20)
	_, _ = rand.Read(junk)
	// Junk behind a plausible handshake record header: the server reads a
	// full 16 KiB record before it can judge it.
	recordJunk := append([]byte{0x16, 0x03, 0x01, 0x40, 0x00}, junk[5:]...)
	kinds := []struct {
		name    string
		n       int
		payload []byte
		stalls  bool // the server can only wait for the deadline
	}{
		{"random junk", 10, junk, false},
		{"junk in a handshake record", 10, recordJunk, false},
		{"partial record", 3, []byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01}, true},
		{"silence", 3, nil, true},
	}
	begin := time.Now()
	type result struct {
		kind   string
		stalls bool
		took   time.Duration
		err    error
	}
	results := make(chan result, 32)
	var wg sync.WaitGroup
	for _, k := range kinds {
		for range k.n {
			c, err := net.Dial("tcp", e.srv.Addr().String())
			noErr(t, err)
			defer c.Close()
			wg.Add(1)
			go func() {
				defer wg.Done()
				took, err := sendJunk(c, k.payload, hsTimeout+2*time.Second)
				results <- result{k.name, k.stalls, took, err}
			}()
		}
	}
	wg.Wait()
	close(results)
	worst := map[string]time.Duration{}
	for r := range results {
		if r.err != nil && isTimeout(r.err) {
			t.Errorf("%s: still open after %s", r.kind, r.took)
			continue
		}
		if r.took > hsTimeout+500*time.Millisecond {
			t.Errorf("%s: closed after %s, want within %s", r.kind, r.took, hsTimeout+500*time.Millisecond)
		}
		if r.stalls && r.took < hsTimeout-50*time.Millisecond {
			t.Errorf("%s: closed after %s, before the TLS deadline", r.kind, r.took)
		}
		worst[r.kind] = max(worst[r.kind], r.took)
	}
	t.Logf("slowest close per kind (TLSHandshakeTimeout %s): %v; all done in %s", hsTimeout, worst, time.Since(begin))
	eventually(t, "every failure reported", func() bool { return e.tlsFails.Load() == 26 })
	equal(t, "messages delivered", e.delivered.Load(), 0)
	equal(t, "sessions", len(e.srv.Sessions()), 0)
	good := e.client(t, &tls.Config{RootCAs: p.caPool}, ClientOptions{})
	noErr(t, good.Start(testCtx(t)))
	e.exchange(t, good)
}

// sendJunk writes payload (nil: nothing) on c and reads until the server
// closes it or wait passes, and reports how long that took; a timeout
// error means the server left the connection open.
func sendJunk(c net.Conn, payload []byte, wait time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetDeadline(start.Add(wait))
	if payload != nil {
		go c.Write(payload) // may block until the server resets it
	}
	_, err := io.Copy(io.Discard, c)
	return time.Since(start), err
}

// TestTLSOverUnix: TLS also wraps a Unix socket; the client then needs an
// explicit ServerName (there is no host to take it from).
func TestTLSOverUnix(t *testing.T) {
	p := certs(t)
	var delivered atomic.Int32
	srv := startServer(t, transports[1], ServerOptions{ConnOptions: fastOpts(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.server}}})
	srv.HandleDefault(func(ctx context.Context, m *Message) error {
		delivered.Add(1)
		return m.Reply(ctx, m.JSON())
	})
	c := startClient(t, transports[1], srv, ClientOptions{ConnOptions: fastOpts(),
		TLSConfig: &tls.Config{RootCAs: p.caPool, ServerName: "localhost"}})
	r, err := c.Request(testCtx(t), "via unix+tls")
	noErr(t, err)
	equal(t, "reply", string(r.JSON()), `"via unix+tls"`)
	equal(t, "tx binary", c.State().TxBinary, true)

	bare := NewClient(ClientOptions{Path: srv.o.Path, ConnOptions: fastOpts(), TLSConfig: &tls.Config{RootCAs: p.caPool}})
	defer bare.Close()
	err = bare.Start(testCtx(t))
	if err == nil {
		t.Fatal("TLS over a Unix socket without ServerName succeeded")
	}
	t.Logf("without ServerName: %v", err)
	equal(t, "messages delivered", delivered.Load(), 1)
}
