package sockhop

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// conn is the engine of one socket, shared by Client and server Sessions.
//
// Three roles own its pieces: the reader owns the decoder (and so the
// receive mode), handles protocol messages and callback replies itself and
// runs the handlers of messages that may start at once (inline.go); the
// dispatcher runs the handlers of the messages that had to wait, in arrival
// order; the writer owns the socket's write side and drains everything
// queued in one write. A role may move between goroutines (the reading
// does, when a handler blocks; a short write is made by its caller). One
// close path, run once, ends them all.
type conn struct {
	nc     net.Conn
	o      *ConnOptions
	reg    *registry
	hooks  connHooks
	log    *slog.Logger
	server bool
	sess   *Session // server side only

	dec    *wire.Decoder
	txTerm []byte

	writeState
	pendingTable
	handshakeState
	pingState

	inbox  *inbox
	reqSem chan struct{}
	workerPool
	inlineState

	ctx    context.Context // handed to handlers; cancelled on close
	cancel context.CancelFunc

	done      chan struct{} // closed when the close path starts
	lifeMu    sync.Mutex    // orders start against a close that comes first
	started   bool
	closeOnce sync.Once
	flushErr  error // a graceful close's flush failed (set before writeDone)
	// dispatchDone is closed when every handler has returned, so the end
	// hooks run after the handlers of messages that arrived before the end.
	dispatchDone chan struct{}
	closeErr     error // why the connection ended (set before done is closed)
	readDone     chan struct{}
	writeDone    chan struct{}
	wg           sync.WaitGroup // the read role, writer, dispatcher and pinger
	dispatching  bool           // the dispatcher was started (reader-owned)
	strikes      int            // undecodable messages so far (reader-owned)
	finished     chan struct{}  // closed when every goroutine has ended
	stats        connStats
	retired      bool // its stats were added to the owner's totals (owner's lock)
}

// connHooks are the events a conn reports to its owner. All may be nil.
type connHooks struct {
	handshake func(ok bool, err error)
	binary    func(rx, tx bool)
	protoErr  func(err error)
	closed    func(err error)
}

func newConn(nc net.Conn, o *ConnOptions, reg *registry, hooks connHooks, log *slog.Logger, server bool) *conn {
	c := &conn{
		nc:        nc,
		o:         o,
		reg:       reg,
		hooks:     hooks,
		log:       log,
		server:    server,
		txTerm:    []byte(o.Terminator),
		inbox:     newInbox(o.MaxInboxBytes),
		reqSem:    make(chan struct{}, o.MaxConcurrentRequests),
		done:      make(chan struct{}),
		readDone:  make(chan struct{}),
		writeDone: make(chan struct{}),
		finished:  make(chan struct{}),

		dispatchDone: make(chan struct{}),
	}
	c.work = make(chan *Message)
	c.dec = wire.NewDecoder(socketReader{c}, []byte(o.RxTerminator), o.MaxMessageSize)
	c.dec.SetFrameAlloc(getFrame, putFrame)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.writeState.init()
	c.pendingTable.init()
	c.handshakeState.init()
	if !o.CompatibilityMode {
		c.dec.SetLimit(o.MaxPreHandshakeSize) // raised when the handshake ends
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // Go's default; said here because the writer coalesces anyway
	}
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn, *tls.Conn:
		// Sockets, where a goroutine wake-up is what handlers on the
		// reader save. Not on in-memory conns (net.Pipe), which is also
		// what tests under testing/synctest use: the process-wide
		// watcher must never touch a conn of a synctest bubble.
		c.inlineOK = true
	}
	return c
}

// start launches the goroutines and, unless in compatibility mode, writes
// our handshake. A conn closed before it started (a session closed from its
// OnSessionStart hook) starts nothing.
func (c *conn) start() {
	c.lifeMu.Lock()
	if c.isDone() {
		c.lifeMu.Unlock()
		return
	}
	c.started = true
	c.lifeMu.Unlock()
	c.wmu.Lock()
	c.canWrite = true
	if c.queuedN > 0 || len(c.open) > 0 {
		c.startWriterLocked() // sent from OnSessionStart
	}
	c.wmu.Unlock()
	// Our handshake is queued before the reader starts, so it is always the
	// first line we write, even when the peer's handshake is already waiting
	// to be answered (PROTOCOL.md 5.3).
	if c.o.CompatibilityMode {
		c.finishHandshake(false, nil)
	} else {
		c.sendHandshake()
	}
	// The writer runs only while something is queued, the dispatcher
	// starts with the first message that has to wait (see queue), and the
	// closer closes finished once the rest have ended: an idle connection
	// runs one goroutine, which matters to a server holding many (each
	// costs 4 KiB or more of stack).
	n := 1
	if c.o.PingInterval > 0 {
		n++
	}
	c.wg.Add(n) // the read role and the pinger
	c.workers.Add(1)
	go c.worker(readRole)
	if c.o.PingInterval > 0 {
		go c.pingLoop(c.o.PingInterval)
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

// close starts the close path once. A graceful close (a local Close) flushes
// what was already queued, bounded by the write timeout, and half-closes so
// the peer reads everything before the FIN; any other cause closes the
// socket at once.
func (c *conn) close(reason error, graceful bool) {
	c.closeOnce.Do(func() {
		if reason == nil {
			reason = errClosed("connection")
		}
		c.lifeMu.Lock()
		started := c.started
		if !started {
			c.closeErr = reason
			close(c.done)
		}
		c.lifeMu.Unlock()
		if !started {
			// Nothing runs yet, and start will not run anything now.
			c.cancel()
			_ = c.nc.Close()
			close(c.dispatchDone)
			close(c.finished)
			return
		}
		c.closeErr = reason
		if errors.Is(reason, &Error{Code: CodeSlowConsumer}) {
			c.stats.slowCuts.Add(1)
		}
		c.wmu.Lock()
		c.closing = true
		if !c.writing {
			// No writer runs: start one to flush what is queued, or, with
			// nothing queued, the write side is finished now.
			if c.queuedN > 0 || len(c.open) > 0 {
				c.startWriterLocked()
			} else {
				c.endWriteLocked()
			}
		}
		c.wmu.Unlock()
		close(c.done)
		c.cancel()
		c.stopHandshakeTimer()
		if !graceful {
			_ = c.nc.Close()
		}
		c.stats.failedByDisconnect.Add(uint64(c.failPending(reason)))
		go c.closer(reason, graceful)
	})
}

// closer finishes the close path: wait for the writer to flush, half-close,
// give the peer a moment to finish, then release the socket.
func (c *conn) closer(reason error, graceful bool) {
	defer func() {
		c.wg.Wait() // the loops, which closed their done channels on their way out
		close(c.finished)
	}()
	<-c.writeDone
	if graceful {
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
			// Wait for the peer's FIN (the reader sees EOF) so that unread
			// bytes on our side cannot turn our close into a reset that
			// destroys data still in flight to the peer.
			t := time.NewTimer(lingerTimeout)
			select {
			case <-c.readDone:
			case <-t.C:
			}
			t.Stop()
		}
		_ = c.nc.Close()
	}
	<-c.readDone
	<-c.dispatchDone
	c.finishHandshake(false, reason)
	if c.hooks.closed != nil {
		c.hooks.closed(reason)
	}
	if isAbnormal(reason) {
		c.log.Warn("sockhop: connection ended", "reason", reason.Error())
	} else {
		c.log.Debug("sockhop: connection ended", "reason", reason.Error())
	}
}

// lingerTimeout bounds how long a graceful close waits for the peer's FIN.
const lingerTimeout = 500 * time.Millisecond

func isAbnormal(err error) bool {
	var ce closedError
	return !errors.As(err, &ce) && !errors.Is(err, io.EOF) && !errors.Is(err, ErrDisconnected)
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
	c.wmu.Lock()
	s.TxBinary = c.txBinary
	c.wmu.Unlock()
	return s
}
