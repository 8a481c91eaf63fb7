package sockhop

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Session is the server's side of one connection. Its methods are safe for
// concurrent use.
type Session struct {
	srv *Server
	id  uint64
	c   *conn
	ip  string // counted in srv.perIP ("" when not)

	mu    sync.Mutex
	value any
	hooks hookRunner // runs the server's hooks for this session, in order
}

// ID returns the session's number, unique within its server (from 1).
func (s *Session) ID() uint64 { return s.id }

// Server returns the server the session belongs to.
func (s *Session) Server() *Server { return s.srv }

// RemoteAddr returns the peer's address.
func (s *Session) RemoteAddr() net.Addr { return s.c.nc.RemoteAddr() }

// LocalAddr returns the server's address of this connection.
func (s *Session) LocalAddr() net.Addr { return s.c.nc.LocalAddr() }

// Context returns a context cancelled when the session ends.
func (s *Session) Context() context.Context { return s.c.ctx }

// Value returns the value stored with SetValue.
func (s *Session) Value() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.value
}

// SetValue stores per-connection application state (the reference's
// Session subclass fields), e.g. from OnSessionStart.
func (s *Session) SetValue(v any) {
	s.mu.Lock()
	s.value = v
	s.mu.Unlock()
}

// State returns the connection's protocol state.
func (s *Session) State() State { return s.c.state() }

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	st := s.c.statsSnapshot()
	st.HookEventsDropped = s.hooks.droppedCount()
	return st
}

// Err returns why the session ended, or nil while it is live.
func (s *Session) Err() error { return s.c.err() }

// Done returns a channel closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.c.done }

// Send sends v to this session's peer (see Client.Send).
func (s *Session) Send(ctx context.Context, v any) error { return sendValue(ctx, s.c, v) }

// SendTyped sends a typed buffer (binary mode only; see Client.SendTyped).
func (s *Session) SendTyped(ctx context.Context, typ string, b []byte) error {
	return sendTyped(ctx, s.c, typ, b)
}

// Request sends v as a callback request and waits for the reply (see
// Client.Request).
func (s *Session) Request(ctx context.Context, v any) (*Message, error) {
	return requestValue(ctx, s.c, v)
}

// RequestFunc sends v as a callback request without waiting for the
// reply; fn gets the reply or the error, exactly once (see
// Client.RequestFunc).
func (s *Session) RequestFunc(ctx context.Context, v any, fn func(*Message, error)) error {
	body, err := encodeValue(v)
	if err != nil {
		return err
	}
	return s.c.requestFunc(ctx, &body, false, fn)
}

// RequestTyped sends a typed buffer as a callback request.
func (s *Session) RequestTyped(ctx context.Context, typ string, b []byte) (*Message, error) {
	if err := checkTyped(typ); err != nil {
		return nil, err
	}
	return s.c.request(ctx, &wire.Message{Type: typ, Data: b, Bytes: true}, true)
}

// SetPingInterval starts, changes or (0) stops pinging this session (see
// Server.SetPingInterval).
func (s *Session) SetPingInterval(d time.Duration) { s.c.setPingInterval(max(d, 0)) }

// Close starts ending the session: what was queued is flushed (bounded by
// WriteTimeout), then the connection is closed. It does not wait, so it is
// safe to call from the session's own handlers and hooks; use Wait to know
// when the session's goroutines have ended.
func (s *Session) Close() error {
	s.c.close(errClosed("session"), true)
	return nil
}

// Wait blocks until the session's goroutines have ended or ctx is done.
func (s *Session) Wait(ctx context.Context) error { return s.c.wait(ctx) }

// The session methods, on the connection itself (a Client goes through its
// reconnect buffer instead).

func sendValue(ctx context.Context, cn *conn, v any) error {
	body, err := encodeValue(v)
	if err != nil {
		return err
	}
	return cn.send(ctx, &body, false, queued)
}

func sendTyped(ctx context.Context, cn *conn, typ string, b []byte) error {
	if err := checkTyped(typ); err != nil {
		return err
	}
	return cn.send(ctx, &wire.Message{Type: typ, Data: b, Bytes: true}, true, queued)
}

func requestValue(ctx context.Context, cn *conn, v any) (*Message, error) {
	body, err := encodeValue(v)
	if err != nil {
		return nil, err
	}
	return cn.request(ctx, &body, false)
}
