package sockhop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// conn is the engine of one socket, shared by Client and server Sessions.
//
// Each piece of state has one owner. The reader goroutine owns the
// decoder (and so the receive mode): it answers handshakes and pings,
// completes callbacks and hands application messages to the dispatcher
// (or, with InlineHandlers, runs their handlers itself). The dispatcher
// runs handlers: plain messages one at a time in arrival order, requests
// concurrently on kept worker goroutines. The sendQueue owns the outbound
// bytes and decides what is written and when; whoever holds its write
// token writes (conn_write.go). Hooks never run on these goroutines: they
// are posted to the owner's hookRunner. One close path, run once, ends it
// all.
//
// The same engine runs over any net.Conn: TCP, Unix, TLS, and net.Pipe in
// tests under testing/synctest, where every timer it uses (handshake,
// pings, the transition proof, write deadlines) is the bubble's.
type conn struct {
	nc     net.Conn
	o      *ConnOptions
	reg    *registry
	hooks  connHooks
	log    *slog.Logger
	server bool
	sess   *Session // server side only
	// cuttable: a write may stop at a deadline and carry on later. True
	// for every net.Conn but *tls.Conn, which is broken after a write
	// deadline (crypto/tls documents it).
	cuttable bool

	dec *wire.Decoder
	q   *sendQueue
	// The write deadline set last, and whether it was a cut write's; only
	// the write token's holder uses them.
	wdl    time.Time
	wdlCut bool

	pendingTable
	handshakeState
	pingState
	proofState

	inbox  *inbox
	reqSem chan struct{}
	// handlerSlots is the server's bound on request handlers running at
	// once (ServerOptions.MaxHandlers); nil on clients.
	handlerSlots chan struct{}
	// bud is the server's memory budget (budget.go); nil on clients. rxHeld
	// is what the decoder holds of it for a partly received message,
	// rxMsgBytes what received messages hold from their queueing until
	// their handler returns. readDeadline: readHolding set a deadline.
	bud          *budget
	rxHeld       atomic.Int64
	rxMsgBytes   atomic.Int64
	readDeadline bool
	carried      int // charged bytes of the frame just read (reader-owned)
	workerPool
	// inlineCtx is the ctx of handlers run on the reader (InlineHandlers):
	// a Request on this connection with it fails at once.
	inlineCtx context.Context

	ctx    context.Context // handed to handlers; cancelled on close
	cancel context.CancelFunc

	done      chan struct{} // closed when the close path starts
	lifeMu    sync.Mutex    // orders start against a close that comes first
	started   bool
	closeOnce sync.Once
	closeErr  error                 // why the connection ended (set before done is closed)
	flushErr  atomic.Pointer[error] // a write failed: a graceful close's flush did not finish
	peerEOF   atomic.Bool           // the reader ended on the peer's clean FIN (not a reset, not mid-message)
	readDone  chan struct{}
	// dispatchDone is closed when every handler has returned, so the end
	// hooks run after the handlers of messages that arrived before the end.
	dispatchDone chan struct{}
	finished     chan struct{}  // closed when every goroutine has ended
	wg           sync.WaitGroup // reader, writer, dispatcher
	trace        *Trace         // nil: no tracing (ConnOptions.Trace, or LevelTrace logging)
	// The reader's: when the message in progress began, and the last read
	// that brought bytes (MinReadRate).
	msgStart, lastRead time.Time
	// pingStart is the ping interval the owner wants when the connection
	// starts (PingInterval, or the value of the owner's SetPingInterval);
	// set before start.
	pingStart   time.Duration
	dispatching bool         // the dispatcher was started (reader-owned)
	strikes     atomic.Int64 // protocol errors of the peer so far
	peerErrs    peerErrors   // the rate limit of their reports
	peerWarns   peerErrors   // and of warnings the peer's messages cause
	stats       connStats
	retired     bool // its stats were added to the owner's totals (owner's lock)
	// connectSeq is the number of this connection's OnConnect on its
	// Client's hookRunner (0 if none), which held messages wait for.
	connectSeq uint64
}

// connHooks are the events a conn reports to its owner, which runs the
// user's hooks on its hookRunner. All may be nil. closed runs on the
// closer goroutine once everything else has ended.
type connHooks struct {
	handshake func(ok bool, err error)
	binary    func(rx, tx bool)
	protoErr  func(err error)
	closed    func(err error)
}

func newConn(nc net.Conn, o *ConnOptions, reg *registry, log *slog.Logger, server bool) *conn {
	c := &conn{
		nc:           nc,
		o:            o,
		reg:          reg,
		log:          log,
		server:       server,
		q:            newSendQueue(o.MaxQueueBytes, []byte(o.Terminator)),
		inbox:        newInbox(o.MaxInboxBytes),
		reqSem:       make(chan struct{}, o.MaxConcurrentRequests),
		done:         make(chan struct{}),
		readDone:     make(chan struct{}),
		dispatchDone: make(chan struct{}),
		finished:     make(chan struct{}),
	}
	c.q.maxSend = o.MaxSendSize
	c.trace = newTrace(o, log)
	c.pingStart = o.PingInterval
	_, isTLS := nc.(*tls.Conn)
	c.cuttable = !isTLS
	c.work = make(chan *Message)
	c.dec = wire.NewDecoder(socketReader{c}, []byte(o.RxTerminator), o.MaxMessageSize)
	c.dec.SetFrameAlloc(getFrame, putFrame)
	// Frames' JSON data is validated where it is used (Message.Decode,
	// JSON), which encoding/json does as it decodes anyway: a second pass
	// here was about 6% of a receiver's CPU.
	c.dec.SetLazyJSON(true)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.inlineCtx = context.WithValue(c.ctx, inlineKey{}, c)
	c.pendingTable.init(func(v any) {
		c.reportError(newError(CodeProtocol, fmt.Sprintf("RequestFunc function panicked: %v", v), nil))
	}, o.MaxPendingRequests)
	c.handshakeState.init()
	if !o.CompatibilityMode {
		c.dec.SetLimit(o.MaxPreHandshakeSize) // raised when the handshake ends
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // Go's default; said here because writes are coalesced anyway
	}
	return c
}

// start queues our handshake (unless in compatibility mode) and starts the
// reader. Until start, the queue's write token is held back, so messages
// sent from OnSessionStart only queue. A conn closed before it started (a
// session closed from its OnSessionStart hook) starts nothing.
func (c *conn) start() {
	c.lifeMu.Lock()
	if c.isDone() {
		c.lifeMu.Unlock()
		return
	}
	c.started = true
	c.lifeMu.Unlock()
	// Our handshake is queued before the reader starts, so it is always the
	// first line we write, even when the peer's handshake is already waiting
	// to be answered (PROTOCOL.md 5.3).
	if c.o.CompatibilityMode {
		c.finishHandshake(false, nil)
	} else {
		c.sendHandshake()
	}
	// The reader writes what is queued before its first read, so a new
	// connection starts no writer goroutine (on TLS it must).
	if c.cuttable {
		c.q.yieldToken()
	} else if c.q.giveBack() {
		c.startWriter()
	}
	c.wg.Add(1)
	go c.readLoop()
	c.pingMu.Lock()
	set := c.pingGen > 0 // the owner's SetPingInterval reached it first
	c.pingMu.Unlock()
	if d := c.pingStart; d > 0 && !set {
		c.setPingInterval(d)
	}
}

// isDone reports whether the close path has started.
func (c *conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// err returns why the connection ended, or nil while it is open.
func (c *conn) err() error {
	if !c.isDone() {
		return nil
	}
	return c.closeErr
}

// close starts the close path once. A graceful close (a local Close)
// refuses new messages but writes what was already accepted, the frames
// held for the transition proof included (the proof waits for WriteTimeout
// at most), then half-closes so the peer reads everything before the FIN;
// any other cause drops what is queued and closes the socket at once.
func (c *conn) close(reason error, graceful bool) {
	c.closeOnce.Do(func() {
		if reason == nil {
			reason = errClosed("connection")
		}
		c.lifeMu.Lock()
		started := c.started
		c.closeErr = reason
		if !started {
			c.q.abort()
			close(c.done)
		}
		c.lifeMu.Unlock()
		if !started {
			// Nothing runs, and start will not run anything now.
			c.cancel()
			_ = c.nc.Close()
			c.stopPings() // armed by SetPingInterval before start, at most
			c.failPending(reason)
			c.finishHandshake(false, reason) // a Start waiting on it returns
			close(c.readDone)
			close(c.dispatchDone)
			close(c.finished)
			return
		}
		if errors.Is(reason, &Error{Code: CodeSlowConsumer}) {
			c.stats.slowCuts.Add(1)
		}
		// The queue refuses new messages before done is closed, so a
		// sender woken by done learns that its message was not taken.
		var p pushed
		if graceful {
			p = c.q.close()
			c.boundProof(c.o.WriteTimeout)
		} else {
			c.q.abort()
			c.stopProof()
		}
		close(c.done)
		c.cancel()
		c.stopHandshakeTimer()
		if !graceful {
			_ = c.nc.Close()
		}
		c.stats.failedByDisconnect.Add(uint64(c.failPending(reason)))
		c.useToken(p.token, false)
		go c.closer(reason, graceful)
	})
}

// closer finishes the close path: wait until everything accepted was
// written, half-close, give the peer a moment to finish, release the
// socket, wait for every goroutine, then tell the owner.
func (c *conn) closer(reason error, graceful bool) {
	<-c.q.finished
	if graceful {
		confirmed := false
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && c.flushErr.Load() == nil {
			// A peer that ended its side before our FIN may not have read
			// everything; only a FIN that answers ours confirms it did.
			endedFirst := isClosed(c.readDone)
			_ = cw.CloseWrite()
			// Wait for the peer's FIN (the reader sees EOF) so that unread
			// bytes on our side cannot turn our close into a reset that
			// destroys data still in flight to the peer.
			t := time.NewTimer(lingerTimeout)
			select {
			case <-c.readDone:
				confirmed = !endedFirst && c.peerEOF.Load()
			case <-t.C:
			}
			t.Stop()
		}
		if !confirmed {
			c.stats.unconfirmed.Add(1)
		}
		_ = c.nc.Close()
	}
	<-c.readDone
	<-c.dispatchDone
	c.wg.Wait()
	c.stopPings()
	c.reportSuppressed()
	if n := c.q.unsentApps(); n > 0 && !c.q.keepUnsent { // else the client recovers them (unsent.go)
		// Send returned nil for them: say so rather than lose them
		// silently. (Bytes handed to the kernel may still be lost with
		// the connection: only a Request's reply confirms delivery.)
		c.stats.unsent.Add(n)
		c.reportError(newError(CodeSocketDestroyed, fmt.Sprintf("%d message(s) accepted for sending to %s were never written in full: the connection ended first (%s)", n, c.remote(), causeText(reason)), nil))
	}
	c.stopProof()
	c.finishHandshake(false, reason)
	if isAbnormal(reason) {
		c.log.Warn("sockhop: connection ended", "reason", reason.Error())
	} else {
		c.log.Debug("sockhop: connection ended", "reason", reason.Error())
	}
	if c.hooks.closed != nil {
		c.hooks.closed(reason)
	}
	close(c.finished)
}

// lingerTimeout bounds how long a graceful close waits for the peer's FIN.
const lingerTimeout = 500 * time.Millisecond

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func isAbnormal(err error) bool {
	var ce closedError
	return !errors.As(err, &ce) && !errors.Is(err, io.EOF) && !errors.Is(err, ErrDisconnected)
}

// flushError returns why a graceful close could not write everything it
// had accepted, or nil.
func (c *conn) flushError() error {
	if p := c.flushErr.Load(); p != nil {
		return *p
	}
	return nil
}

// peerError classifies a read error: EOF and resets are the peer leaving.
func peerError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return newError(CodeSocketDestroyed, "connection closed by peer in the middle of a message", err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
		return newError(CodeSocketDestroyed, "connection closed by peer", nil)
	}
	return err
}

func isReset(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) {
		s := oe.Err.Error()
		return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
	}
	return false
}

// wait blocks until every goroutine of the conn has ended or ctx is done.
func (c *conn) wait(ctx context.Context) error {
	select {
	case <-c.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// State is a snapshot of one connection's protocol state.
type State struct {
	Connected bool
	// HandshakeDone: the handshake finished, either way (the reference's
	// init_complete); always true in compatibility mode.
	HandshakeDone bool
	// HandshakeOK: it succeeded (the reference's handshake_successful).
	HandshakeOK bool
	// RxBinary, TxBinary: each direction's mode.
	RxBinary, TxBinary bool
	// PeerVersion is the library_version the peer announced ("" if none).
	PeerVersion string
}

func (c *conn) state() State {
	c.hsMu.Lock()
	s := State{
		Connected:     !c.isDone(),
		HandshakeDone: c.hsDone,
		HandshakeOK:   c.hsOK,
		PeerVersion:   c.peerVersion,
	}
	c.hsMu.Unlock()
	s.RxBinary = c.rxBinary.Load()
	s.TxBinary = c.q.isBinary()
	return s
}
