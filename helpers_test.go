package sockhop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// transport is one way of carrying a connection in the test matrix.
type transport struct {
	name string
	// server fills in the listening side of the options.
	server func(t *testing.T, o *ServerOptions)
	// client points o at a listening server.
	client func(srv *Server, o *ClientOptions)
}

var transports = []transport{
	{
		name:   "tcp",
		server: func(t *testing.T, o *ServerOptions) { o.Addr = "127.0.0.1:0" },
		client: func(srv *Server, o *ClientOptions) { o.Addr = srv.Addr().String() },
	},
	{
		name:   "unix",
		server: func(t *testing.T, o *ServerOptions) { o.Path = shortSocketPath(t) },
		client: func(srv *Server, o *ClientOptions) { o.Path = srv.o.Path },
	},
}

// modes are the two transmit modes a handshaked pair can end up in.
var modes = []struct {
	name     string
	noBinary bool
}{{"binary", false}, {"json", true}}

// shortSocketPath returns a Unix socket path in a fresh temp dir that fits
// the 107-byte limit (t.TempDir paths can be longer).
func shortSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sh")
	noErr(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// startServer listens with o on tr and closes the server at cleanup.
func startServer(t *testing.T, tr transport, o ServerOptions) *Server {
	t.Helper()
	tr.server(t, &o)
	srv := NewServer(o)
	noErr(t, srv.Listen())
	t.Cleanup(func() { srv.Close() })
	return srv
}

// startClient connects a client to srv with Start (Connect in compatibility
// mode) and closes it at cleanup.
func startClient(t *testing.T, tr transport, srv *Server, o ClientOptions) *Client {
	t.Helper()
	tr.client(srv, &o)
	c := NewClient(o)
	t.Cleanup(func() { c.Close() })
	ctx := testCtx(t)
	if o.CompatibilityMode {
		noErr(t, c.Connect(ctx))
	} else {
		noErr(t, c.Start(ctx))
	}
	return c
}

// testCtx is a context that ends with the test or after 30 s: a bound for
// tests that hang, generous for a busy CI machine.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fastOpts are connection options for tests that expect handshakes to
// succeed: the timeout is generous, since a loaded CI machine running
// several race-enabled packages at once can take a while to schedule a
// connection's goroutines.
func fastOpts() ConnOptions {
	return ConnOptions{HandshakeTimeout: 3 * time.Second}
}

// smallSendBuffer is a ClientOptions.Dial that gives the socket a kernel
// send buffer of size bytes (SO_SNDBUF, which also stops the kernel growing
// it): tests of what happens when a write cannot finish at once must not
// depend on how much the machine's buffers absorb.
func smallSendBuffer(size int) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if b, ok := nc.(interface{ SetWriteBuffer(int) error }); ok {
			if err := b.SetWriteBuffer(size); err != nil {
				nc.Close()
				return nil, err
			}
		}
		return nc, nil
	}
}

// silentOpts are connection options for tests that wait for a handshake to
// time out (1.x and compatibility-mode peers).
func silentOpts() ConnOptions {
	return ConnOptions{HandshakeTimeout: 300 * time.Millisecond}
}

// requester is Client.Request or Session.Request.
type requester func(context.Context, any) (*Message, error)

// flood has workers goroutines per requester make each requests of payload
// at once, and fails the test with the first error, or the first reply
// that check refuses.
func flood(t *testing.T, ctx context.Context, reqs []requester, workers, each int, payload any, check func(*Message) error) {
	t.Helper()
	errs := make(chan error, len(reqs)*workers)
	var wg sync.WaitGroup
	for _, req := range reqs {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					r, err := req(ctx, payload)
					if err == nil {
						err = check(r)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// replyOf checks that a reply carries n bytes.
func replyOf(n int) func(*Message) error {
	return func(r *Message) error {
		if len(r.Bytes()) != n {
			return fmt.Errorf("reply of %d bytes, want %d", len(r.Bytes()), n)
		}
		return nil
	}
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func errorIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v does not match %v", err, target)
	}
}

func equal[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// recv waits for one value from ch, failing the test after 5 s.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// eventually polls cond every 5 ms for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
