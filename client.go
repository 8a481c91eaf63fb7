package sockhop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// ClientOptions configure a Client. The zero value connects to
// 127.0.0.1:50000 with the reference's defaults.
type ClientOptions struct {
	// Addr is the server's TCP address (default "127.0.0.1:50000").
	Addr string
	// Path, when set, is a Unix socket path used instead of Addr.
	Path string
	// TLSConfig, when set, wraps the connection in TLS (the reference's
	// ssl / ssl_options). Its ServerName defaults to Addr's host.
	TLSConfig *tls.Config
	// Dial replaces net.Dialer.DialContext, e.g. for tests over net.Pipe.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds one connection attempt, TLS included
	// (default 5 s). Unlike the reference's, the attempt is really
	// cancelled when it expires.
	ConnectTimeout time.Duration

	ConnOptions

	// AutoReconnect reconnects, with a fresh handshake, after the connection
	// is lost, until it succeeds or Close is called. Unlike the reference, a
	// first Connect or Start that fails is retried too (the call still
	// returns its error). Waits start at ReconnectInterval (default 2 s, the
	// reference's) and double after each failed attempt up to
	// MaxReconnectInterval (default 30 s), each with up to 10% jitter.
	AutoReconnect        bool
	ReconnectInterval    time.Duration
	MaxReconnectInterval time.Duration
	// MaxReconnectAttempts stops reconnecting after that many failed
	// attempts in a row (0: no limit).
	MaxReconnectAttempts int
	// RequireHandshake is the reference's auto_rehandshake: a reconnection
	// counts only once its handshake succeeded; a connection whose
	// handshake fails (a 1.x server came back in its place) is dropped and
	// retried. It implies AutoReconnect, and ReconnectInterval defaults to
	// the reference's 5 s.
	RequireHandshake bool
	// ReconnectBufferSize, when positive, lets Send, SendTyped and Request
	// wait out a reconnection instead of failing with ErrNotConnected
	// (with AutoReconnect, the messages a dead connection accepted but
	// never wrote are moved to the front of the buffer too):
	// while the client reconnects, whole messages are held, up to this many
	// bytes of data, and written in order once the new handshake finished
	// and OnConnect ran. A message that does not fit fails with
	// ErrBufferFull; a held request whose ctx ends is dropped from the
	// buffer; what is still held when Close is called or reconnecting gives
	// up is reported through OnError and counted in Stats.BufferDropped.
	ReconnectBufferSize int

	// Hooks, all optional. They run on the library's goroutines, one at a
	// time and in order, and must not block for long.
	//
	// OnConnect runs when a connection is established, before its
	// handshake (the reference's connect event), also with
	// RequireHandshake; what it sends goes out in JSON mode or waits for
	// the binary switch. OnReady is the hook for "the connection is ready".
	OnConnect func(c *Client)
	// OnReady runs once per connection after its handshake ended, when
	// messages flow in the mode they will keep: after a successful
	// handshake, or a failed one (a 1.x peer: JSON mode) unless
	// RequireHandshake drops such connections; in compatibility mode,
	// right after OnConnect. It runs after OnHandshake.
	OnReady func(c *Client)
	// OnDisconnect runs once when a connection ended, with the reason (the
	// reference's disconnect); OnUnhandshake follows it when that
	// connection had completed a successful handshake (the reference's
	// unhandshake event, and disconnect's handshaked argument).
	OnDisconnect  func(c *Client, err error)
	OnUnhandshake func(c *Client, err error)
	// OnHandshake reports each handshake's outcome (not in compatibility
	// mode).
	OnHandshake func(c *Client, ok bool, err error)
	// OnBinaryMode reports a direction switching to binary mode.
	OnBinaryMode func(c *Client, rx, tx bool)
	// OnError reports problems that do not end the connection: messages
	// that could not be decoded, replies nobody waited for, handler errors.
	OnError func(c *Client, err error)
	// OnReconnect reports each failed reconnection attempt (counted from 1
	// since the connection was lost) with the delay before the next one;
	// next is 0 when MaxReconnectAttempts made it the last.
	OnReconnect func(c *Client, attempt int, err error, next time.Duration)
}

// Client is one end of a Sockhop connection that dials. Its methods are safe
// for concurrent use.
type Client struct {
	o      ClientOptions
	optErr error
	reg    registry

	mu         sync.Mutex
	cur        *conn
	pingEvery  time.Duration // PingInterval, then SetPingInterval's
	connecting bool
	closed     bool
	everUp     bool          // a connection succeeded once: reconnects apply
	gaveUp     bool          // the reconnect loop reached MaxReconnectAttempts
	retired    Stats         // counters of ended connections, and reconnects
	loop       chan struct{} // closed when the reconnect loop ends
	stop       chan struct{} // closed by Close
	buf        sendBuffer    // messages held while reconnecting
	wg         sync.WaitGroup
	hooks      hookRunner // runs the On* hooks, in order
}

// NewClient returns a Client; nothing is dialled until Connect or Start.
// An invalid option is reported by Connect and Start.
func NewClient(o ClientOptions) *Client {
	c := &Client{o: o, stop: make(chan struct{}), pingEvery: max(o.PingInterval, 0)}
	if c.o.Addr == "" {
		c.o.Addr = DefaultAddr
	}
	if c.o.ConnectTimeout == 0 {
		c.o.ConnectTimeout = DefaultConnectTimeout
	}
	if c.o.RequireHandshake {
		c.o.AutoReconnect = true
		if c.o.ReconnectInterval == 0 {
			c.o.ReconnectInterval = DefaultRehandshakeInterval
		}
	}
	if c.o.ReconnectInterval == 0 {
		c.o.ReconnectInterval = DefaultReconnectInterval
	}
	if c.o.MaxReconnectInterval == 0 {
		c.o.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if c.o.MaxReconnectInterval < c.o.ReconnectInterval {
		c.o.MaxReconnectInterval = c.o.ReconnectInterval
	}
	c.optErr = c.o.ConnOptions.setDefaults()
	if c.optErr == nil && (c.o.ConnectTimeout < 0 || c.o.ReconnectInterval < 0) {
		c.optErr = newError(CodeBadOption, "ConnectTimeout and ReconnectInterval must not be negative", nil)
	}
	return c
}

// Handle registers h for messages of type typ (nil removes it).
func (c *Client) Handle(typ string, h Handler) { c.reg.set(typ, h) }

// HandleDefault registers h for messages no Handle matched.
func (c *Client) HandleDefault(h Handler) { c.reg.setFallback(h) }

// Connect dials the server and returns once connected; the handshake runs in
// the background (see Start). Connecting while connected is a no-op. With
// RequireHandshake it fails with CodeAutoRehandshakeConnect, as the
// reference's connect() does with auto_rehandshake: use Start.
func (c *Client) Connect(ctx context.Context) error {
	if c.o.RequireHandshake {
		return newError(CodeAutoRehandshakeConnect, "Connect does not wait for the handshake, which RequireHandshake needs; use Start", nil)
	}
	_, err := c.connect(ctx, false, false)
	return err
}

// Start connects and waits for the handshake. It fails with an error
// matching ErrHandshakeTimeout against a peer that never handshakes (Sockhop
// 1.x, compatibility mode) and then closes the connection; use Connect for
// those peers.
func (c *Client) Start(ctx context.Context) error {
	if c.o.CompatibilityMode {
		return newError(CodeHandshakeCompatibilityMode, "Start needs a handshake, and compatibility mode has none; use Connect", nil)
	}
	cn, err := c.connect(ctx, true, false)
	if err != nil {
		return err
	}
	select {
	case <-cn.hsDoneCh:
	case <-ctx.Done():
		cn.close(ctx.Err(), false)
		return ctx.Err()
	}
	ok, err := cn.handshakeResult()
	if !ok {
		// Gracefully: a 1.x peer may be writing to us right now, and a reset
		// would make its write fail (an 'error' event a Node app may not
		// listen for).
		cn.close(err, true)
		return err
	}
	// OnConnect and OnHandshake have run (unless Start was called from a
	// hook, which they wait behind).
	c.hooks.settle(ctx.Done())
	return nil
}

// connect dials and starts a connection; fresh refuses an existing one,
// and reconnect counts it in Stats.Reconnects, before it starts, so that no
// hook of it can run before it is counted.
func (c *Client) connect(ctx context.Context, fresh, reconnect bool) (*conn, error) {
	if c.optErr != nil {
		return nil, c.optErr
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, errClosed("client")
	case c.connecting:
		c.mu.Unlock()
		return nil, newError(CodeMultiConnect, "a connection attempt is already in progress", nil)
	case c.cur != nil && !c.cur.isDone():
		cur := c.cur
		c.mu.Unlock()
		if fresh {
			return nil, newError(CodeMultiConnect, "already connected", nil)
		}
		return cur, nil
	}
	c.connecting = true
	c.mu.Unlock()

	cn, err := c.dial(ctx)

	c.mu.Lock()
	c.connecting = false
	if err == nil && c.closed {
		c.mu.Unlock()
		_ = cn.nc.Close()
		return nil, errClosed("client")
	}
	if err != nil {
		startLoop := c.o.AutoReconnect && !c.closed && c.loop == nil
		if startLoop {
			c.startLoopLocked()
		}
		c.mu.Unlock()
		return nil, err
	}
	c.cur = cn
	cn.pingStart = c.pingEvery
	c.everUp, c.gaveUp = true, false
	if reconnect {
		c.retired.Reconnects++
	}
	// OnConnect is posted before the connection starts, so it runs before
	// any hook of the connection's own.
	if c.o.OnConnect != nil {
		c.hooks.post(func() { c.o.OnConnect(c) }, false)
	}
	if f := c.o.OnReady; f != nil && c.o.CompatibilityMode {
		c.hooks.post(func() { f(c) }, false) // no handshake to wait for
	}
	cn.connectSeq = c.hooks.seq()
	c.mu.Unlock()
	if testHookBeforeStart != nil {
		testHookBeforeStart()
	}
	cn.start()
	return cn, nil
}

// testHookBeforeStart, when set by a test, runs between a connection's
// registration and its start: where a Close used to leave Start waiting.
var testHookBeforeStart func()

// dial opens the socket (TLS included) within ConnectTimeout.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.ConnectTimeout)
	defer cancel()
	network, addr := "tcp", c.o.Addr
	if c.o.Path != "" {
		network, addr = "unix", c.o.Path
	}
	dial := c.o.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, network, addr)
	if err != nil {
		return nil, wrapf(err, "connect to %s %s", network, addr)
	}
	if c.o.TLSConfig != nil {
		cfg := c.o.TLSConfig.Clone()
		if cfg.ServerName == "" && network == "tcp" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, newError(CodeTLSHandshake, fmt.Sprintf("TLS handshake with %s failed", addr), err)
		}
		nc = tc
	}
	log := c.o.Logger.With("peer", addr)
	cn := newConn(nc, &c.o.ConnOptions, &c.reg, log, false)
	// With a reconnect buffer, what the connection never writes goes to
	// the buffer when it dies (recoverUnsent), not away.
	cn.q.keepUnsent = c.o.ReconnectBufferSize > 0 && c.o.AutoReconnect
	cn.hooks = connHooks{closed: func(err error) { c.lost(cn, err) }}
	if c.o.OnHandshake != nil || c.o.OnReady != nil {
		cn.hooks.handshake = func(ok bool, err error) {
			if f := c.o.OnHandshake; f != nil {
				c.hooks.post(func() { f(c, ok, err) }, false)
			}
			if f := c.o.OnReady; f != nil && (ok || !c.o.RequireHandshake) {
				c.hooks.post(func() { f(c) }, false)
			}
		}
	}
	if f := c.o.OnBinaryMode; f != nil {
		cn.hooks.binary = func(rx, tx bool) { c.hooks.post(func() { f(c, rx, tx) }, false) }
	}
	if c.o.OnError != nil {
		cn.hooks.protoErr = c.reportError
	}
	return cn, nil
}

// reportError runs OnError on the hook goroutine.
func (c *Client) reportError(err error) {
	if f := c.o.OnError; f != nil {
		c.hooks.post(func() { f(c, err) }, true)
	}
}

// lost runs when a connection ended: report it and, with AutoReconnect,
// make sure the reconnect loop runs.
func (c *Client) lost(cn *conn, err error) {
	final := cn.statsSnapshot()
	final.RequestsPending = 0
	var recovered []heldMsg
	lostN := 0
	if cn.q.keepUnsent {
		recovered, lostN = recoverUnsent(cn.q.takeUnsent(), []byte(c.o.Terminator))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(recovered) > 0 {
		lostN += c.requeueLocked(recovered)
	}
	if lostN > 0 {
		final.Unsent += uint64(lostN)
		c.reportError(newError(CodeSocketDestroyed, fmt.Sprintf("%d message(s) accepted for sending were lost with the connection (written in part, or replies for the peer that went away): %s", lostN, causeText(err)), nil))
	}
	c.retired.add(final)
	cn.retired = true
	if f := c.o.OnDisconnect; f != nil {
		c.hooks.post(func() { f(c, err) }, false)
	}
	if f := c.o.OnUnhandshake; f != nil && cn.handshaked() {
		c.hooks.post(func() { f(c, err) }, false)
	}
	if c.closed || !c.o.AutoReconnect || c.loop != nil {
		return // a running loop restarts itself if it ends on a dead connection
	}
	c.startLoopLocked()
}

// current returns the live connection or ErrNotConnected / ErrClosed.
func (c *Client) current() (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed("client")
	}
	if c.cur == nil || c.cur.isDone() {
		return nil, ErrNotConnected
	}
	return c.cur, nil
}

// Send sends v (type name per TypeName; []byte as a raw Buffer). It returns
// once the message is queued for writing, waiting while the outbound queue
// is full until ctx ends. While disconnected it fails with ErrNotConnected,
// unless ReconnectBufferSize lets it wait for the reconnection.
func (c *Client) Send(ctx context.Context, v any) error {
	body, err := encodeValue(v)
	if err != nil {
		return err
	}
	return c.send(ctx, body, false)
}

// SendTyped sends b as a typed buffer of type typ; it needs binary mode
// (ErrNoBinaryMode otherwise, PROTOCOL.md 10).
func (c *Client) SendTyped(ctx context.Context, typ string, b []byte) error {
	if err := checkTyped(typ); err != nil {
		return err
	}
	return c.send(ctx, wire.Message{Type: typ, Data: b, Bytes: true}, true)
}

// Request sends v as a callback request and returns the peer's reply. The
// ctx deadline is the timeout; if the connection ends first the error
// matches ErrDisconnected.
func (c *Client) Request(ctx context.Context, v any) (*Message, error) {
	body, err := encodeValue(v)
	if err != nil {
		return nil, err
	}
	return c.request(ctx, body, false)
}

// RequestFunc sends v as a callback request and returns without waiting
// for the reply: fn is called exactly once with the reply, or with the
// error that ended the wait (ctx ended: the deadline is the timeout; the
// connection ended: ErrDisconnected). If RequestFunc returns an error the
// request was not sent and fn is never called.
//
// Many requests can be in flight from one goroutine, as with net/rpc's
// Go: the pattern for pipelining without a goroutine per request. fn
// usually runs on the goroutine that reads the connection, so a reply
// costs no goroutine wake-up; while fn runs nothing else is read from
// the connection. fn must therefore return quickly and must not wait for
// anything the connection has yet to read (a Request on the same
// connection would wait out its ctx): hand longer work to a goroutine of
// your own. The Message is fn's to keep.
func (c *Client) RequestFunc(ctx context.Context, v any, fn func(*Message, error)) error {
	body, err := encodeValue(v)
	if err != nil {
		return err
	}
	return c.requestFunc(ctx, body, false, fn)
}

// RequestTyped sends a typed buffer as a callback request.
func (c *Client) RequestTyped(ctx context.Context, typ string, b []byte) (*Message, error) {
	if err := checkTyped(typ); err != nil {
		return nil, err
	}
	return c.request(ctx, wire.Message{Type: typ, Data: b, Bytes: true}, true)
}

// SetPingInterval starts, changes or (0) stops pinging the server (the
// reference's client.ping(ms)): every d once the handshake has ended, on
// this connection and those after a reconnect; a server that answers none
// of four pings in a row is taken for dead and the connection closed
// (ErrPingTimeout; AutoReconnect then reconnects). Stopping forgets the
// pings sent so far.
func (c *Client) SetPingInterval(d time.Duration) {
	d = max(d, 0)
	c.mu.Lock()
	c.pingEvery = d
	cn := c.cur
	c.mu.Unlock()
	if cn != nil {
		cn.setPingInterval(d)
	}
}

// RemoteAddr returns the address of the server of the current
// connection, or nil while there is none.
func (c *Client) RemoteAddr() net.Addr {
	if cn, err := c.current(); err == nil {
		return cn.nc.RemoteAddr()
	}
	return nil
}

// LocalAddr returns the local address of the current connection, or nil
// while there is none.
func (c *Client) LocalAddr() net.Addr {
	if cn, err := c.current(); err == nil {
		return cn.nc.LocalAddr()
	}
	return nil
}

// Stats returns the counters of every connection the client has had.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	st := c.retired
	if c.cur != nil && !c.cur.retired {
		st.add(c.cur.statsSnapshot())
	}
	c.mu.Unlock()
	st.HookEventsDropped += c.hooks.droppedCount()
	return st
}

// State returns the current connection's state (zero when disconnected).
func (c *Client) State() State {
	cn, err := c.current()
	if err != nil {
		return State{}
	}
	return cn.state()
}

// Close ends the connection, writing what was already accepted first
// (bounded by WriteTimeout), stops reconnecting, fails pending requests and
// returns once every goroutine of the client has ended and every hook due
// (OnDisconnect last) has run. It returns an error only when messages
// already accepted could not all be written: on the connection, or held
// while reconnecting (ReconnectBufferSize; the error says how many).
// Whether the peer confirmed the close by closing its side in turn (and so
// read everything) is counted in Stats.UnconfirmedCloses. Close is
// idempotent;
// afterwards every method returns an error matching ErrClosed.
//
// Close may be called from any hook: it never waits for a hook that is
// running when it is called (that hook may be the caller), nor for the
// hooks queued behind it, which run once it returns. It waits for the
// handlers that are running, so a handler must not call it (use
// go c.Close() there).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	cn := c.cur
	// What the reconnect buffer holds is taken here, before the loop sees
	// the stop and drops it itself: Close reports it to its caller.
	held := c.buf.take()
	c.mu.Unlock()
	var err error
	if cn != nil {
		cn.close(errClosed("client"), true)
		<-cn.finished
		if ferr := cn.flushError(); ferr != nil {
			err = newError(CodeSocketDestroyed, "closing: messages already accepted were not all written", ferr)
		}
	}
	c.wg.Wait()
	if lost := c.dropHeld(held, errClosed("client")); lost > 0 {
		// Close is the last chance to say it: those Sends returned nil.
		err = errors.Join(err, newError(CodeClosed, fmt.Sprintf("closing: %d message(s) held while reconnecting (ReconnectBufferSize) were never sent", lost), nil))
	}
	c.hooks.settle(nil)
	return err
}
