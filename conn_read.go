package sockhop

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// The reading is a role, not a goroutine: whichever goroutine holds it
// decodes the stream. A message that may start at once runs on the
// goroutine that read it (see inline.go); when its handler blocks, the
// reading moves to an idle worker or a new goroutine and the old reader
// becomes a worker when its handler returns. Every goroutine that can hold
// the role is a worker (counted in workers); the role itself is counted in
// wg, from start until endRead.

// readRole is handed to a worker to make it the reader.
var readRole = new(Message)

// read decodes the stream while the calling goroutine holds the read role.
// It returns false when the stream has ended (endRead done), true when the
// reading moved to another goroutine while this one ran a handler.
func (c *conn) read() bool {
	for {
		m, err := c.dec.Next()
		if err != nil {
			var de *wire.DecodeError
			if errors.As(err, &de) {
				if c.isDone() {
					continue
				}
				c.strikes++
				c.stats.protoErrors.Add(1)
				perr := newError(de.Code, fmt.Sprintf("from %s: %s", c.remote(), de.Msg), nil)
				c.reportError(perr)
				if c.o.MaxProtocolErrors > 0 && c.strikes > c.o.MaxProtocolErrors {
					c.stats.limits.Add(1)
					c.close(newError(CodeProtocol, fmt.Sprintf("peer %s sent %d undecodable messages, more than MaxProtocolErrors (%d)", c.remote(), c.strikes, c.o.MaxProtocolErrors), nil), false)
				}
				continue
			}
			if errors.Is(err, wire.ErrMessageTooLarge) {
				c.stats.limits.Add(1)
				err = newError(CodeMessageTooLarge, fmt.Sprintf("peer %s disconnected", c.remote()), err)
				c.reportError(err)
			} else {
				err = peerError(err)
			}
			c.close(err, false)
			c.endRead()
			return false
		}
		if c.isDone() {
			continue // draining until the peer's FIN after a graceful close
		}
		if m.Binary {
			c.stats.binIn.Add(1)
		} else {
			c.stats.jsonIn.Add(1)
		}
		if msg := c.handle(&m); msg != nil {
			still := c.runInline(msg)
			if msg.IsRequest() {
				<-c.reqSem
			} else {
				c.inbox.endInline()
			}
			if !still {
				return true
			}
		}
	}
}

// endRead ends the read role: no message is queued after it.
func (c *conn) endRead() {
	c.inbox.close()
	if !c.dispatching {
		// No message had to wait for a dispatcher, but handlers moved off
		// the reader may still run (this goroutine may be one of them,
		// so it cannot wait here).
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.endWorkers()
		}()
	}
	close(c.readDone)
	c.wg.Done()
}

func (c *conn) reportError(err error) {
	c.log.Debug("sockhop: protocol error", "err", err.Error())
	if c.hooks.protoErr != nil {
		c.hooks.protoErr(err)
	}
}

// handle acts on one decoded message (PROTOCOL.md 3.5, 4.5): reserved types
// first, then callback responses, then the application. It returns a
// message for the reader to run itself (see read): a request holding a
// reqSem slot, or a plain message with the inbox marked (beginInline).
func (c *conn) handle(m *wire.Message) *Message {
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
			c.sendControl(&wire.Message{Type: wire.TypePong, Data: wire.MarshalPong(data, timeNow())})
		case wire.TypePong:
			c.onPong(m)
		}
		return nil
	}
	if m.Kind == wire.Response {
		if c.isOwnHandshake(m.ID) {
			c.onHandshakeReply(m)
			return nil
		}
		if !c.deliver(m.ID, newMessage(nil, m)) {
			c.stats.protoErrors.Add(1)
			c.reportError(newError(CodeUnknownCallback, fmt.Sprintf("reply from %s for callback id %q, which is not pending (answered twice, timed out or never sent); dropped", c.remote(), m.ID), nil))
		}
		return nil
	}
	msg := newMessage(c, m)
	if !c.inlineOK {
		c.queue(msg)
		return nil
	}
	if !msg.IsRequest() {
		// In order: nothing before it waits or runs.
		if c.inbox.beginInline() {
			return msg
		}
		c.queue(msg)
		return nil
	}
	if c.inbox.idle() {
		// Nothing waits in the inbox and no plain handler runs, so the
		// request may start now, in order, as the dispatcher would start
		// it, and on this goroutine (read runs it). Only when a slot is
		// free: the reader must never wait for one.
		select {
		case c.reqSem <- struct{}{}:
			return msg
		default:
		}
	}
	c.queue(msg)
	return nil
}

// queue hands msg to the dispatcher, started with the first message that
// has to wait for one.
func (c *conn) queue(msg *Message) {
	if !c.dispatching {
		c.dispatching = true
		c.wg.Add(1) // before readDone is closed, so before the closer waits
		go c.dispatchLoop()
	}
	c.inbox.push(msg, c.done)
}

// dispatchLoop runs handlers: plain messages one after another in arrival
// order; requests each in a goroutine of their own, at most
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
		if !m.IsRequest() {
			c.run(m)
			continue
		}
		c.reqSem <- struct{}{} // frees up: handlers return once ctx is cancelled
		c.startRequest(m)
	}
}

// endWorkers waits for the handlers still running, then closes
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

// startRequest runs request m in an idle worker or a new one; the caller
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

// worker runs m (a request, or readRole: read until the stream ends or
// the reading moves on), then whatever is handed to it while it waits,
// until enough others wait or the dispatcher ends.
func (c *conn) worker(m *Message) {
	defer c.workers.Done()
	for {
		if m != readRole {
			c.run(m)
			<-c.reqSem
		} else if !c.read() {
			return // the stream ended
		}
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

func (c *conn) run(m *Message) {
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
	if err := h(c.ctx, m); err != nil {
		c.log.Warn("sockhop: handler failed", "type", m.Type, "err", err.Error())
		if c.hooks.protoErr != nil {
			c.hooks.protoErr(fmt.Errorf("sockhop: handler for %q: %w", m.Type, err))
		}
	}
}

// registry maps type names to handlers; it is shared by a Server's
// sessions. Lookups take a read lock only.
type registry struct {
	mu       sync.RWMutex
	byType   map[string]Handler
	fallback Handler
}

func (r *registry) set(typ string, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byType == nil {
		r.byType = make(map[string]Handler)
	}
	if h == nil {
		delete(r.byType, typ)
		return
	}
	r.byType[typ] = h
}

func (r *registry) setFallback(h Handler) {
	r.mu.Lock()
	r.fallback = h
	r.mu.Unlock()
}

func (r *registry) lookup(typ string) Handler {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if h, ok := r.byType[typ]; ok {
		return h
	}
	return r.fallback
}
