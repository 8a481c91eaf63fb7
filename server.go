package sockhop

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// ServerOptions configure a Server. The zero value listens on
// 127.0.0.1:50000 with the reference's defaults.
type ServerOptions struct {
	// Addr is the TCP address to listen on (default "127.0.0.1:50000";
	// port 0 picks a free port, see Server.Addr).
	Addr string
	// Path, when set, is a Unix socket path used instead of Addr. A
	// socket file is replaced only when a probe connection to it is
	// refused (ECONNREFUSED: a dead server's file); a live server, a
	// probe failing any other way (EACCES, a full backlog, a timeout) or
	// any other kind of file makes Listen fail. A lock file, Path+".lock",
	// is held while listening, so of servers starting on one path at once
	// exactly one listens.
	Path string
	// SocketMode is the Unix socket file's mode (default 0600).
	SocketMode os.FileMode
	// TLSConfig, when set, serves TLS (the reference has no TLS server).
	TLSConfig *tls.Config
	// TLSHandshakeTimeout bounds a client's TLS handshake (default 2 s).
	TLSHandshakeTimeout time.Duration
	// MaxConnections bounds live sessions (default 65,536); connections
	// over it are closed at once.
	MaxConnections int
	// MaxConnectionsPerIP, when positive, bounds the live sessions (and
	// connections still starting) from one IP address over TCP; more are
	// closed at once. Default off.
	MaxConnectionsPerIP int
	// Hardened sets, for a server that faces an untrusted network, every
	// bound the default leaves off for the sake of 1.x peers, which it
	// then cannot serve (they never handshake): DropFailedHandshake; a
	// pre-handshake limit of 64 KiB, kept until the handshake succeeds;
	// PingInterval 30 s and IdleTimeout 2 min (a live peer's pongs keep an
	// idle connection open); MaxConnectionsPerIP 64; MinReadRate 1 KiB/s
	// after MessageGrace 10 s. A field set explicitly keeps its value.
	Hardened bool
	// MemoryBudget bounds the bytes the server buffers for all its peers
	// together (default 256 MiB; negative: no budget): partly received
	// messages, received messages until their handler returns, outbound
	// queues. A large frame's buffer grows as its bytes arrive. While the
	// budget is short, the connections holding the most wait (a reader
	// that waits pushes back on its peer through TCP), each may go past it
	// by one message each way, and a peer that holds budget without
	// progress for MemoryBudgetStall is cut with ErrMemoryBudget. It must
	// be at least twice MaxMessageSize. Stats report its use.
	MemoryBudget int64
	// MemoryBudgetStall is how long a peer may hold part of a short
	// budget without progress before it is cut (default 10 s).
	MemoryBudgetStall time.Duration
	// MaxHandlers bounds request handlers running at once across all
	// sessions (default 1,024; negative: no bound); further requests wait
	// their turn, as with each session's MaxConcurrentRequests. A
	// session's plain messages run one at a time on a goroutine of its own
	// and do not count.
	MaxHandlers int

	ConnOptions

	// OnSessionStart runs for each accepted connection before anything is
	// read or written on it (the reference's session start()). An error
	// refuses the connection. ctx ends when the server closes.
	OnSessionStart func(ctx context.Context, s *Session) error
	// OnSessionEnd runs once when a session's connection ended, with the
	// reason (the reference's end() and disconnect). OnSessionUnhandshake
	// follows it when the session had completed a successful handshake
	// (the reference's unhandshake event, and disconnect's handshaked
	// argument; Session.State().HandshakeOK says the same).
	OnSessionEnd         func(s *Session, err error)
	OnSessionUnhandshake func(s *Session, err error)
	// OnHandshake reports each session's handshake outcome.
	OnHandshake func(s *Session, ok bool, err error)
	// OnBinaryMode reports a session direction switching to binary mode.
	OnBinaryMode func(s *Session, rx, tx bool)
	// OnError reports problems that do not end the connection, and errors
	// of the listener.
	OnError func(s *Session, err error)
}

// Server accepts Sockhop connections and runs a Session for each. Its
// methods are safe for concurrent use.
type Server struct {
	o      ServerOptions
	optErr error
	reg    registry

	mu       sync.Mutex
	ln       net.Listener
	sessions map[uint64]*Session
	// snap is the sessions in id order, rebuilt after a change (nil):
	// a broadcast neither allocates nor sorts.
	snap   []*Session
	nextID uint64
	perIP  map[string]int // sessions and starting connections per IP (MaxConnectionsPerIP)
	// pingEvery is the ping interval of new sessions: PingInterval, then
	// SetPingInterval's.
	pingEvery time.Duration
	closed    bool
	starting  int   // connections accepted, not yet sessions (TLS, OnSessionStart)
	retired   Stats // counters of ended sessions, and refusals

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	hooks  hookRunner // OnError for errors of no session (the listener's)

	bud          *budget       // nil: no MemoryBudget
	handlerSlots chan struct{} // nil: no MaxHandlers
}

// Hardened profile values (ServerOptions.Hardened).
const (
	hardenedPreHandshake = 64 << 10
	hardenedPing         = 30 * time.Second
	hardenedIdle         = 2 * time.Minute
	hardenedPerIP        = 64
	hardenedMinReadRate  = 1 << 10
)

// harden fills in the hardened profile where a field was left at zero.
func (o *ServerOptions) harden() {
	o.DropFailedHandshake = true
	set := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	setD := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&o.MaxPreHandshakeSize, hardenedPreHandshake)
	set(&o.MaxConnectionsPerIP, hardenedPerIP)
	set(&o.MinReadRate, hardenedMinReadRate)
	setD(&o.PingInterval, hardenedPing)
	setD(&o.IdleTimeout, hardenedIdle)
}

// NewServer returns a Server; nothing listens until Listen or Serve.
func NewServer(o ServerOptions) *Server {
	if o.Hardened {
		o.harden()
	}
	s := &Server{o: o, sessions: make(map[uint64]*Session), pingEvery: o.PingInterval}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.o.Addr == "" {
		s.o.Addr = DefaultAddr
	}
	if s.o.SocketMode == 0 {
		s.o.SocketMode = 0o600
	}
	if s.o.TLSHandshakeTimeout == 0 {
		s.o.TLSHandshakeTimeout = 2 * time.Second
	}
	if s.o.MaxConnections == 0 {
		s.o.MaxConnections = 65536
	}
	s.optErr = s.o.ConnOptions.setDefaults()
	if s.optErr == nil {
		s.optErr = s.budgetDefaults()
	}
	return s
}

// Handle registers h for messages of type typ from any session (nil
// removes it).
func (s *Server) Handle(typ string, h Handler) { s.reg.set(typ, h) }

// HandleDefault registers h for messages no Handle matched.
func (s *Server) HandleDefault(h Handler) { s.reg.setFallback(h) }

// Listen binds the address and accepts connections in the background until
// Close. Binding errors (port in use, live socket file) are returned, never
// waited on as the reference does (9.2).
func (s *Server) Listen() error {
	if s.optErr != nil {
		return s.optErr
	}
	ln, err := s.listen()
	if err != nil {
		return err
	}
	if s.o.TLSConfig != nil {
		ln = tls.NewListener(ln, s.o.TLSConfig)
	}
	if err := s.setListener(ln); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.acceptLoop(ln)
	}()
	return nil
}

// Serve accepts connections on ln until Close, then returns ErrClosed. Use
// it for listeners made elsewhere; TLSConfig is not applied to them.
func (s *Server) Serve(ln net.Listener) error {
	if s.optErr != nil {
		return s.optErr
	}
	if err := s.setListener(ln); err != nil {
		return err
	}
	return s.acceptLoop(ln)
}

func (s *Server) setListener(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = ln.Close()
		return errClosed("server")
	}
	if s.ln != nil {
		_ = ln.Close()
		return newError(CodeMultiConnect, "server is already listening", nil)
	}
	s.ln = ln
	return nil
}

func (s *Server) listen() (net.Listener, error) {
	if s.o.Path == "" {
		ln, err := net.Listen("tcp", s.o.Addr)
		if err != nil {
			return nil, wrapf(err, "listen on %s", s.o.Addr)
		}
		return ln, nil
	}
	return listenUnix(s.o.Path, s.o.SocketMode)
}

// Addr returns the listening address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) acceptLoop(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return errClosed("server")
			}
			// Temporary trouble (e.g. too many open files): back off as
			// net/http does rather than spin or give up.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.report(nil, wrapf(err, "accept failed, retrying in %s", delay))
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return errClosed("server")
			}
			continue
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.startSession(nc)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// report runs OnError on the session's hook goroutine (the server's for
// errors of no session).
func (s *Server) report(sess *Session, err error) {
	f := s.o.OnError
	if f == nil {
		return
	}
	r := &s.hooks
	if sess != nil {
		r = &sess.hooks
	}
	r.post(func() { f(sess, err) }, true)
}

// startSession runs the TLS handshake and the start hook, then registers
// the session and starts its connection (which writes our handshake).
func (s *Server) startSession(nc net.Conn) {
	// A slot is taken before the TLS handshake and the start hook, so that
	// connections still starting count against MaxConnections too.
	s.mu.Lock()
	if s.closed || len(s.sessions)+s.starting >= s.o.MaxConnections {
		full := !s.closed
		if full {
			s.retired.LimitViolations++
		}
		s.mu.Unlock()
		_ = nc.Close()
		if full {
			s.report(nil, newError(CodeMaxConnections, fmt.Sprintf("connection from %s refused: MaxConnections (%d) reached", nc.RemoteAddr(), s.o.MaxConnections), nil))
		}
		return
	}
	ip := peerIP(nc)
	if limit := s.o.MaxConnectionsPerIP; limit > 0 && ip != "" {
		if s.perIP[ip] >= limit {
			s.retired.LimitViolations++
			s.mu.Unlock()
			_ = nc.Close()
			s.report(nil, newError(CodeMaxConnections, fmt.Sprintf("connection from %s refused: MaxConnectionsPerIP (%d) reached for %s", nc.RemoteAddr(), limit, ip), nil))
			return
		}
		if s.perIP == nil {
			s.perIP = make(map[string]int)
		}
		s.perIP[ip]++
	} else {
		ip = ""
	}
	s.starting++
	s.nextID++
	sess := &Session{srv: s, id: s.nextID, ip: ip}
	s.mu.Unlock()
	registered := false
	defer func() {
		if !registered {
			s.mu.Lock()
			s.starting--
			s.releaseIPLocked(ip)
			s.mu.Unlock()
		}
	}()

	if tc, ok := nc.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(s.ctx, s.o.TLSHandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			s.o.Logger.Info("sockhop: TLS handshake failed", "peer", nc.RemoteAddr().String(), "err", err.Error())
			s.report(nil, newError(CodeTLSHandshake, fmt.Sprintf("TLS handshake with %s failed", nc.RemoteAddr()), err))
			return
		}
	}
	remote := "unix"
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		remote = a.String()
	}
	log := s.o.Logger.With("session", sess.id, "peer", remote)
	cn := newConn(nc, &s.o.ConnOptions, &s.reg, log, true)
	cn.useBudget(s.bud, s.handlerSlots)
	cn.sess = sess
	sess.c = cn
	cn.hooks = connHooks{
		closed: func(err error) {
			final := sess.Stats()
			final.RequestsPending = 0
			s.mu.Lock()
			delete(s.sessions, sess.id)
			s.releaseIPLocked(sess.ip)
			s.snap = nil
			s.retired.add(final)
			s.mu.Unlock()
			if f := s.o.OnSessionEnd; f != nil {
				sess.hooks.post(func() { f(sess, err) }, false)
			}
			if f := s.o.OnSessionUnhandshake; f != nil && cn.handshaked() {
				sess.hooks.post(func() { f(sess, err) }, false)
			}
		},
	}
	if f := s.o.OnHandshake; f != nil {
		cn.hooks.handshake = func(ok bool, err error) { sess.hooks.post(func() { f(sess, ok, err) }, false) }
	}
	if f := s.o.OnBinaryMode; f != nil {
		cn.hooks.binary = func(rx, tx bool) { sess.hooks.post(func() { f(sess, rx, tx) }, false) }
	}
	if s.o.OnError != nil {
		cn.hooks.protoErr = func(err error) { s.report(sess, err) }
	}
	if s.o.OnSessionStart != nil {
		if err := s.runStart(sess); err != nil {
			_ = nc.Close()
			log.Info("sockhop: session refused by OnSessionStart", "err", err.Error())
			s.report(sess, wrapf(err, "session %d refused by OnSessionStart", sess.id))
			return
		}
	}
	s.mu.Lock()
	if s.closed || cn.isDone() { // closing, or closed from OnSessionStart
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	// Registered and started in one critical section so that Close sees
	// either no session or a running one.
	s.starting--
	registered = true
	s.sessions[sess.id] = sess
	s.snap = nil
	cn.pingStart = s.pingEvery
	cn.start()
	s.mu.Unlock()
}

// peerIP is the IP address of a TCP peer, "" for other transports.
func peerIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// releaseIPLocked gives back ip's slot; s.mu held.
func (s *Server) releaseIPLocked(ip string) {
	if ip == "" {
		return
	}
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// runStart runs the start hook, turning a panic into an error (the
// reference's server dies when start() rejects, 9.3).
func (s *Server) runStart(sess *Session) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return s.o.OnSessionStart(s.ctx, sess)
}

// Sessions returns the live sessions, oldest first.
func (s *Server) Sessions() []*Session {
	return slices.Clone(s.snapshot())
}

// snapshot returns the sessions in id order; the slice is shared and must
// not be modified.
func (s *Server) snapshot() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap == nil {
		snap := make([]*Session, 0, len(s.sessions))
		for _, sess := range s.sessions {
			snap = append(snap, sess)
		}
		slices.SortFunc(snap, func(a, b *Session) int { return cmp.Compare(a.id, b.id) })
		s.snap = snap
	}
	return s.snap
}

// Stats returns the counters of every session the server has had.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.retired
	live := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		live = append(live, sess)
	}
	s.mu.Unlock()
	for _, sess := range live {
		st.add(sess.Stats())
	}
	st.HookEventsDropped += s.hooks.droppedCount()
	st.MemoryBudgetUsed, st.MemoryBudgetLimit = 0, 0
	if s.bud != nil {
		st.MemoryBudgetUsed, st.MemoryBudgetLimit = s.bud.used.Load(), s.bud.limit
	}
	return st
}

// SendAll sends v to every live session. It is encoded once per mode and
// the same bytes are queued on each session; it never waits: a session
// whose outbound queue is full is closed as a slow consumer. The error
// reports a value that cannot be encoded, or one over MaxSendSize in the
// form a session would get (ErrMessageTooLarge; then no session gets it).
func (s *Server) SendAll(ctx context.Context, v any) error {
	body, err := encodeValue(v)
	if err != nil {
		return err
	}
	return s.sendAll(ctx, &body)
}

// sendAll queues body, encoded once per mode, on every live session.
func (s *Server) sendAll(ctx context.Context, body *wire.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sessions := s.snapshot()
	if len(sessions) == 0 {
		return nil
	}
	if err := s.checkSendAllSize(body, sessions); err != nil {
		return err
	}
	enc := encodePair(body, []byte(s.o.Terminator))
	for _, sess := range sessions {
		_ = sess.c.sendEncoded(enc)
	}
	return nil
}

// checkSendAllSize refuses a broadcast over MaxSendSize before any
// session gets it: as a frame for every session, as a JSON line if any
// session sends JSON lines. A session that switches to binary meanwhile
// only gets a smaller form.
func (s *Server) checkSendAllSize(body *wire.Message, sessions []*Session) error {
	if err := overSendLimit(body, s.o.MaxSendSize, true); err != nil {
		return err
	}
	if overSendLimit(body, s.o.MaxSendSize, false) == nil {
		return nil
	}
	for _, sess := range sessions {
		if !sess.c.q.isBinary() {
			return overSendLimit(body, s.o.MaxSendSize, false)
		}
	}
	return nil
}

// SetPingInterval starts, changes or (0) stops pinging on every session,
// and on those that connect later (the reference's server.ping(ms)):
// every d each session whose handshake has ended is pinged, and one that
// answers none of four pings in a row is closed as dead (ErrPingTimeout).
// Stopping forgets the pings sent so far. Session.SetPingInterval
// changes one session.
func (s *Server) SetPingInterval(d time.Duration) {
	d = max(d, 0)
	s.mu.Lock()
	s.pingEvery = d // sessions registered from now on start with it
	s.mu.Unlock()
	for _, sess := range s.snapshot() {
		sess.c.setPingInterval(d)
	}
}

// Close stops listening, closes every session (flushing what each had
// queued, bounded by WriteTimeout), removes the Unix socket file and
// returns when every goroutine of the server has ended. Close is
// idempotent.
func (s *Server) Close() error {
	return s.Shutdown(context.Background())
}

// Shutdown closes the server like Close, but gives up flushing when ctx
// ends: sessions still writing are then cut off at once, and Shutdown
// returns ctx's error after every goroutine has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	ln := s.ln
	sessions := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	s.cancel()
	var err error
	if ln != nil {
		err = ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	}
	for _, sess := range sessions {
		sess.c.close(errClosed("server"), true)
	}
	for _, sess := range sessions {
		select {
		case <-sess.c.finished:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			_ = sess.c.nc.Close() // stop flushing: the writer and reader end at once
			<-sess.c.finished
		}
	}
	s.wg.Wait()
	// The sessions' hooks (OnSessionEnd last), except one running now: a
	// hook may have called Shutdown.
	for _, sess := range sessions {
		sess.hooks.settle(nil)
	}
	s.hooks.settle(nil)
	return err
}
