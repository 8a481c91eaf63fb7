package sockhop

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// readLoop decodes the peer's stream. Protocol messages and callback replies
// are handled here; application messages go to the dispatcher in order.
func (c *conn) readLoop() {
	defer c.wg.Done()
	defer close(c.readDone)
	defer func() {
		c.inbox.close()
		if !c.dispatching {
			close(c.dispatchDone) // no message ever needed a dispatcher
		}
	}()
	strikes := 0
	for {
		m, err := c.dec.Next()
		if err != nil {
			var de *wire.DecodeError
			if errors.As(err, &de) {
				if c.isDone() {
					continue
				}
				strikes++
				c.stats.protoErrors.Add(1)
				perr := newError(de.Code, fmt.Sprintf("from %s: %s", c.remote(), de.Msg), nil)
				c.reportError(perr)
				if c.o.MaxProtocolErrors > 0 && strikes > c.o.MaxProtocolErrors {
					c.stats.limits.Add(1)
					c.close(newError(CodeProtocol, fmt.Sprintf("peer %s sent %d undecodable messages, more than MaxProtocolErrors (%d)", c.remote(), strikes, c.o.MaxProtocolErrors), nil), false)
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
			return
		}
		if c.isDone() {
			continue // draining until the peer's FIN after a graceful close
		}
		if m.Binary {
			c.stats.binIn.Add(1)
		} else {
			c.stats.jsonIn.Add(1)
		}
		c.handle(&m)
	}
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
			c.sendControl(&wire.Message{Type: wire.TypePong, Data: wire.MarshalPong(data, timeNow())})
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
	if !c.dispatching {
		c.dispatching = true
		c.wg.Add(1) // before readDone is closed, so before the closer waits
		go c.dispatchLoop()
	}
	c.inbox.push(newMessage(c, m), c.done)
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
	// Request goroutines are kept, up to maxIdleWorkers, for the next
	// requests: a new goroutine per request grew its stack anew for every
	// handler that decodes JSON, which cost about a seventh of the CPU of
	// a request/reply exchange with 64 requests in flight.
	var workers sync.WaitGroup
	var idle atomic.Int32
	work := make(chan *Message)
	defer func() {
		close(work)
		workers.Wait()
		close(c.dispatchDone)
	}()
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
		select {
		case work <- m: // an idle worker takes it
		default:
			workers.Add(1)
			go c.requestWorker(m, work, &idle, &workers)
		}
	}
}

// maxIdleWorkers bounds the request goroutines a connection keeps waiting
// for work. Kept goroutines cost memory only on connections that had that
// many requests running at once, and the GC shrinks their stacks.
const maxIdleWorkers = 64

// requestWorker runs m, then the requests the dispatcher hands it while it
// waits, until enough others wait or the dispatcher ends.
func (c *conn) requestWorker(m *Message, work <-chan *Message, idle *atomic.Int32, workers *sync.WaitGroup) {
	defer workers.Done()
	for {
		c.run(m)
		<-c.reqSem
		if idle.Add(1) > maxIdleWorkers {
			idle.Add(-1)
			return
		}
		var ok bool
		m, ok = <-work
		idle.Add(-1)
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
