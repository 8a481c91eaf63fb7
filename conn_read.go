package sockhop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// readLoop is the reader: one goroutine per connection, from start until
// the stream ends. It decodes, answers protocol messages, completes
// callbacks and hands application messages on.
func (c *conn) readLoop() {
	defer c.wg.Done()
	defer c.endRead()
	for {
		m, err := c.dec.Next()
		if m.Owned && m.Binary && c.bud != nil {
			// A large frame's buffer (JSON-mode Buffers own buffers too,
			// not reserved) stays charged, as the message's, for as long
			// as the message is queued or handled (chargeMsg).
			c.carried = len(m.Frame)
			c.rxHeld.Add(-int64(c.carried))
		}
		if err != nil {
			c.dropCarried()
			var de *wire.DecodeError
			if errors.As(err, &de) {
				if !c.isDone() {
					c.onUndecodable(de)
				}
				continue
			}
			if se := (*wire.SizeError)(nil); errors.As(err, &se) {
				if se.Limit != c.o.MaxMessageSize && se.Limit == c.o.MaxPreHandshakeSize {
					se.Option = "MaxPreHandshakeSize"
				}
				c.stats.limits.Add(1)
				err = newError(CodeMessageTooLarge, fmt.Sprintf("peer %s disconnected", c.remote()), err)
				c.reportError(err)
			} else if errors.Is(err, ErrMemoryBudget) {
				c.reportError(err)
			} else {
				c.peerEOF.Store(errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF))
				err = peerError(c.tlsRejection(err))
			}
			c.close(err, false)
			return
		}
		if c.trace != nil {
			c.traceReceived(&m)
		}
		if c.isDone() {
			// Draining until the peer's FIN after a graceful close. A pong
			// may still prove the switch that the close waits for.
			if m.Type == wire.TypePong && m.HasType {
				c.onPong(&m)
			}
			c.dropCarried()
			continue
		}
		if m.Binary {
			c.stats.binIn.Add(1)
		} else {
			c.stats.jsonIn.Add(1)
		}
		c.handle(&m)
		c.dropCarried()
	}
}

// endRead ends the reading: no message is queued after it.
func (c *conn) endRead() {
	c.dec.Release() // gives back the budget a partly received message held
	c.inbox.close()
	if !c.dispatching {
		close(c.dispatchDone)
	}
	close(c.readDone)
}

func (c *conn) reportError(err error) {
	c.log.Debug("sockhop: protocol error", "err", err.Error())
	if c.hooks.protoErr != nil {
		c.hooks.protoErr(err)
	}
}

// handle acts on one decoded message (PROTOCOL.md 3.5, 4.5): reserved types
// first, then callback responses, then the application.
func (c *conn) handle(m *wire.Message) {
	if m.Reserved() {
		switch m.Type {
		case wire.TypeHandshake:
			c.onPeerHandshake(m)
		case wire.TypeTransition:
			// The decoder has already switched at the exact byte.
			if !c.rxBinary.Swap(true) && c.hooks.binary != nil {
				c.hooks.binary(true, false)
			}
		case wire.TypePing:
			data := m.Data
			if m.Bytes {
				data = nil
			}
			c.sendControl(&wire.Message{Type: wire.TypePong, Data: wire.MarshalPong(data, timeNow())}, true)
		case wire.TypePong:
			c.onPong(m)
		}
		return
	}
	if m.Kind == wire.Response {
		if c.isOwnHandshake(m.ID) {
			c.onHandshakeReply(m)
			return
		}
		if ok, late := c.deliver(m.ID, newMessage(nil, m)); late {
			c.stats.lateReplies.Add(1)
		} else if !ok {
			c.protocolError(CodeUnknownCallback, fmt.Sprintf("reply for callback id %s, which is not pending (answered twice, or never asked); dropped", quoteName(m.ID)))
		}
		return
	}
	if !m.HasType && string(m.Data) == "null" {
		// Not a message at all; a Node 2.x receiver crashes on it (14.2).
		c.onUndecodable(&wire.DecodeError{Code: CodeBadData, Msg: "a line holding only null, which is no message (a Node 2.x receiver crashes on it); skipped"})
		return
	}
	msg := newMessage(c, m)
	if c.o.InlineHandlers && c.inlineNow() {
		c.runInline(msg)
		return
	}
	c.queue(msg)
}

// queue hands msg to the dispatcher, started with the first message.
func (c *conn) queue(msg *Message) {
	if !c.dispatching {
		c.dispatching = true
		c.wg.Add(1) // before readDone is closed, so before the closer waits
		go c.dispatchLoop()
	}
	if c.bud != nil && !c.chargeMsg(msg) {
		return
	}
	if !c.inbox.push(msg, c.done) {
		c.unchargeMsg(msg)
	}
}

// dispatchLoop runs handlers: plain messages one after another in arrival
// order; requests each on a worker of their own, at most
// MaxConcurrentRequests at once, so a slow request does not hold up the
// rest while a handler may itself wait on a Request.
//
// It runs until the reader has ended and every message it queued was
// handled: messages that arrived before the connection ended are delivered
// even when the peer closed right after sending them. Handlers running
// after the end see their ctx cancelled.
func (c *conn) dispatchLoop() {
	defer c.wg.Done()
	defer c.endWorkers()
	for {
		m, ok := c.inbox.pop()
		if !ok {
			return
		}
		c.awaitOutbound()
		if !m.IsRequest() {
			c.run(c.ctx, m)
			c.unchargeMsg(m)
			continue
		}
		c.reqSem <- struct{}{} // frees up: handlers return once ctx is cancelled
		if c.handlerSlots != nil {
			select {
			case c.handlerSlots <- struct{}{}:
			case <-c.ctx.Done():
				// Closing: the slots may all be held by other sessions'
				// handlers. Run it here (its ctx is cancelled), starting no
				// goroutine, rather than wait for them.
				c.run(c.ctx, m)
				c.unchargeMsg(m)
				<-c.reqSem
				continue
			}
		}
		c.startRequest(m)
	}
}

// endWorkers waits for the request handlers still running, then closes
// dispatchDone. The reading has ended, so nothing hands out work any more.
func (c *conn) endWorkers() {
	close(c.work)
	c.workers.Wait()
	close(c.dispatchDone)
}

// workerPool keeps request goroutines, up to maxIdleWorkers, for the next
// requests: a new goroutine per request grew its stack anew for every
// handler that decodes JSON, which cost about a seventh of the CPU of a
// request/reply exchange with 64 requests in flight.
type workerPool struct {
	work    chan *Message // unbuffered: a send succeeds only to an idle worker
	idle    atomic.Int32
	workers sync.WaitGroup
}

// maxIdleWorkers bounds the request goroutines a connection keeps waiting
// for work. Kept goroutines cost memory only on connections that had that
// many requests running at once, and the GC shrinks their stacks.
const maxIdleWorkers = 64

// startRequest runs request m on an idle worker or a new one; the caller
// holds a reqSem slot for it. Only the dispatcher calls it, before it
// closes work.
func (c *conn) startRequest(m *Message) {
	select {
	case c.work <- m:
	default:
		c.workers.Add(1)
		go c.worker(m)
	}
}

// worker runs request m, then whatever is handed to it while it waits,
// until enough others wait or the dispatcher ends.
func (c *conn) worker(m *Message) {
	defer c.workers.Done()
	for {
		c.run(c.ctx, m)
		c.unchargeMsg(m)
		if c.handlerSlots != nil {
			<-c.handlerSlots
		}
		<-c.reqSem
		if c.idle.Add(1) > maxIdleWorkers {
			c.idle.Add(-1)
			return
		}
		var ok bool
		m, ok = <-c.work
		c.idle.Add(-1)
		if !ok {
			return
		}
	}
}

func (c *conn) run(ctx context.Context, m *Message) {
	h := c.reg.lookup(m.Type)
	if h == nil {
		if m.IsRequest() {
			c.stats.unanswered.Add(1)
			if c.warnNow() {
				c.log.Warn("sockhop: no handler for request; the peer will wait for a reply that never comes", "type", shortName(m.Type), "peer", c.remote())
			}
		} else {
			c.log.Debug("sockhop: no handler for message; dropped", "type", m.Type)
		}
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.reportError(newError(CodeProtocol, fmt.Sprintf("handler for %s panicked: %v", quoteName(m.Type), r), nil))
		}
		if m.IsRequest() && !m.replied.Load() {
			c.unanswered(m)
		}
	}()
	if err := h(ctx, m); err != nil {
		if c.warnNow() {
			c.log.Warn("sockhop: handler failed", "type", shortName(m.Type), "err", err.Error())
		}
		if c.hooks.protoErr != nil {
			c.hooks.protoErr(wrapf(err, "handler for %s", quoteName(m.Type)))
		}
	}
}

// unanswered counts and logs a request whose handler ended without a
// reply: nothing else would ever tell anyone, and the peer's callback
// waits forever (a Node peer's has no timeout).
func (c *conn) unanswered(m *Message) {
	c.stats.unanswered.Add(1)
	if c.warnNow() {
		c.log.Warn("sockhop: request handler returned without replying; the peer waits for a reply that never comes: call m.Reply (even with nil) before returning", "type", shortName(m.Type), "peer", c.remote())
	}
}

// registry maps type names to handlers; it is shared by a Server's
// sessions. A lookup (one per message, from every connection's reader at
// once) reads an immutable table through an atomic pointer, with no shared
// write: a read lock made every reader write the same cache line.
// Handle and HandleDefault, which are rare, copy the table.
type registry struct {
	mu    sync.Mutex // serialises changes
	table atomic.Pointer[handlerTable]
}

type handlerTable struct {
	byType   map[string]Handler
	fallback Handler
}

// change applies f to a copy of the table and publishes the copy.
func (r *registry) change(f func(t *handlerTable)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &handlerTable{byType: make(map[string]Handler)}
	if old := r.table.Load(); old != nil {
		maps.Copy(t.byType, old.byType)
		t.fallback = old.fallback
	}
	f(t)
	r.table.Store(t)
}

func (r *registry) set(typ string, h Handler) {
	r.change(func(t *handlerTable) {
		if h == nil {
			delete(t.byType, typ)
		} else {
			t.byType[typ] = h
		}
	})
}

func (r *registry) setFallback(h Handler) {
	r.change(func(t *handlerTable) { t.fallback = h })
}

func (r *registry) lookup(typ string) Handler {
	t := r.table.Load()
	if t == nil {
		return nil
	}
	if h, ok := t.byType[typ]; ok {
		return h
	}
	return t.fallback
}

// socketReader is what the decoder reads from: the socket, with what was
// left for the reader written first (it answers what was read before), the
// bytes counted, and, with IdleTimeout or MinReadRate, a deadline on each
// read.
type socketReader struct{ c *conn }

func (sr socketReader) Read(p []byte) (int, error) {
	c := sr.c
	c.flushForRead()
	holding := c.bud != nil && c.rxHeld.Load() > 0
	if c.o.IdleTimeout <= 0 && c.o.MinReadRate <= 0 && !holding {
		if c.readDeadline { // set while the budget held the reader
			_ = c.nc.SetReadDeadline(time.Time{})
			c.readDeadline = false
		}
		n, err := c.nc.Read(p)
		c.stats.bytesIn.Add(uint64(n))
		return n, err
	}
	now := time.Now()
	var dl time.Time
	if c.o.IdleTimeout > 0 {
		dl = now.Add(c.o.IdleTimeout)
	}
	slow := false
	if rate := c.o.MinReadRate; rate > 0 {
		// A message in progress must keep arriving at rate bytes a second
		// on average, after MessageGrace (slowloris peers).
		if partial := c.dec.Partial(); partial == 0 {
			c.msgStart = time.Time{}
		} else {
			if c.msgStart.IsZero() {
				c.msgStart = c.lastRead // its first bytes came with that read
			}
			mdl := c.msgStart.Add(c.o.MessageGrace + time.Duration(partial)*time.Second/time.Duration(rate))
			if dl.IsZero() || mdl.Before(dl) {
				dl, slow = mdl, true
			}
		}
	}
	var n int
	var err error
	if holding {
		n, err = c.readHolding(p, dl)
	} else {
		_ = c.nc.SetReadDeadline(dl) // zero: none
		c.readDeadline = false       // what readHolding set is replaced
		n, err = c.nc.Read(p)
		c.stats.bytesIn.Add(uint64(n))
	}
	if n > 0 {
		c.lastRead = time.Now()
	}
	if err != nil && isTimeout(err) {
		if slow {
			err = newError(CodeIdle, fmt.Sprintf("peer sent %d bytes of a message in %s, slower than MinReadRate (%d bytes/s after MessageGrace %s); connection closed", c.dec.Partial(), time.Since(c.msgStart).Round(time.Millisecond), c.o.MinReadRate, c.o.MessageGrace), err)
		} else {
			err = newError(CodeIdle, fmt.Sprintf("peer sent nothing for %s (IdleTimeout); connection closed", c.o.IdleTimeout), err)
		}
	}
	return n, err
}
