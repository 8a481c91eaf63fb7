package sockhop

import (
	"context"
	"errors"
	"fmt"
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
			if errors.Is(err, wire.ErrMessageTooLarge) {
				c.stats.limits.Add(1)
				err = newError(CodeMessageTooLarge, fmt.Sprintf("peer %s disconnected", c.remote()), err)
				c.reportError(err)
			} else if errors.Is(err, ErrMemoryBudget) {
				c.reportError(err)
			} else {
				err = peerError(c.tlsRejection(err))
			}
			c.close(err, false)
			return
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

// onUndecodable counts a message that could not be decoded and closes the
// connection past MaxProtocolErrors. The reader calls it, and so does a
// Message whose data, validated where it was used, is not JSON.
func (c *conn) onUndecodable(de *wire.DecodeError) {
	strikes := c.strikes.Add(1)
	c.stats.protoErrors.Add(1)
	c.reportError(newError(de.Code, fmt.Sprintf("from %s: %s", c.remote(), de.Msg), nil))
	if c.o.MaxProtocolErrors > 0 && strikes > int64(c.o.MaxProtocolErrors) {
		c.stats.limits.Add(1)
		c.close(newError(CodeProtocol, fmt.Sprintf("peer %s sent %d undecodable messages, more than MaxProtocolErrors (%d)", c.remote(), strikes, c.o.MaxProtocolErrors), nil), false)
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
		if !c.deliver(m.ID, newMessage(nil, m)) {
			c.stats.protoErrors.Add(1)
			c.reportError(newError(CodeUnknownCallback, fmt.Sprintf("reply from %s for callback id %q, which is not pending (answered twice, timed out or never sent); dropped", c.remote(), m.ID), nil))
		}
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
			c.log.Warn("sockhop: no handler for request; the peer will wait for a reply that never comes", "type", m.Type, "peer", c.remote())
		} else {
			c.log.Debug("sockhop: no handler for message; dropped", "type", m.Type)
		}
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.reportError(newError(CodeProtocol, fmt.Sprintf("handler for %q panicked: %v", m.Type, r), nil))
		}
	}()
	if err := h(ctx, m); err != nil {
		c.log.Warn("sockhop: handler failed", "type", m.Type, "err", err.Error())
		if c.hooks.protoErr != nil {
			c.hooks.protoErr(fmt.Errorf("sockhop: handler for %q: %w", m.Type, err))
		}
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
// bytes counted, and, with an idle timeout, a deadline on each read.
type socketReader struct{ c *conn }

func (sr socketReader) Read(p []byte) (int, error) {
	c := sr.c
	c.flushForRead()
	if c.bud != nil && c.rxHeld.Load() > 0 {
		return c.readHolding(p)
	}
	idle := c.o.IdleTimeout
	if idle > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(idle))
	} else if c.readDeadline {
		_ = c.nc.SetReadDeadline(time.Time{})
		c.readDeadline = false
	}
	n, err := c.nc.Read(p)
	c.stats.bytesIn.Add(uint64(n))
	if err != nil && idle > 0 && isTimeout(err) {
		err = newError(CodeIdle, fmt.Sprintf("peer sent nothing for %s (IdleTimeout); connection closed", idle), err)
	}
	return n, err
}
