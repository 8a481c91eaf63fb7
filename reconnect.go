package sockhop

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// ErrBufferFull: a message did not fit in the reconnect buffer
// (ClientOptions.ReconnectBufferSize).
var ErrBufferFull = &Error{Code: CodeQueueFull, Msg: "reconnect buffer full"}

// reconnectLoop dials until connected, Close is called or the attempt
// limit is reached, then writes what the reconnect buffer held. It is the
// only goroutine that ends the loop on success (in flushBuffer), so that no
// Send can slip past the held messages.
func (c *Client) reconnectLoop() {
	defer c.wg.Done()
	delay := c.o.ReconnectInterval
	for attempt := 1; ; attempt++ {
		if !c.sleep(delay + time.Duration(rand.Int64N(int64(delay)/10+1))) {
			c.endLoop(errClosed("client"))
			return
		}
		cn, err := c.reconnectOnce()
		if err == nil {
			c.o.Logger.Info("sockhop: reconnected", "attempt", attempt)
			c.flushBuffer(cn)
			return
		}
		var se *Error
		if errors.Is(err, ErrClosed) || (errors.As(err, &se) && se.Code == CodeMultiConnect) {
			// Closed, or the application connected by itself meanwhile.
			c.endLoop(err)
			return
		}
		last := c.o.MaxReconnectAttempts > 0 && attempt >= c.o.MaxReconnectAttempts
		next := min(2*delay, c.o.MaxReconnectInterval)
		if last {
			next = 0
		}
		if last {
			c.mu.Lock()
			c.gaveUp = true // Send fails with ErrNotConnected again
			c.mu.Unlock()
			// End first, so that the hook sees the client's final state.
			c.endLoop(wrapf(err, "gave up reconnecting after %d attempts (MaxReconnectAttempts)", attempt))
		}
		if f := c.o.OnReconnect; f != nil {
			a := attempt
			c.hooks.post(func() { f(c, a, err, next) }, false)
		}
		c.o.Logger.Info("sockhop: reconnect failed", "attempt", attempt, "err", err.Error(), "next", next)
		if last {
			return
		}
		delay = next
	}
}

// sleep waits for d, or returns false at once when the client is closed.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}

// reconnectOnce makes one attempt and waits for its handshake, so that
// held messages go out in the mode the new connection settled on. With
// RequireHandshake a failed handshake fails the attempt.
func (c *Client) reconnectOnce() (*conn, error) {
	ctx, cancel := c.stopContext()
	defer cancel()
	cn, err := c.connect(ctx, false, true)
	if err != nil {
		return nil, err
	}
	select {
	case <-cn.hsDoneCh:
	case <-c.stop:
		return nil, errClosed("client")
	}
	if ok, err := cn.handshakeResult(); !ok && c.o.RequireHandshake {
		cn.close(err, false)
		return nil, wrapf(err, "reconnected, but the handshake failed (RequireHandshake)")
	}
	return cn, nil
}

// stopContext returns a context that Close cancels.
func (c *Client) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// endLoop marks the reconnect loop finished and fails what the buffer held.
func (c *Client) endLoop(reason error) {
	c.mu.Lock()
	held := c.buf.take()
	c.endLoopLocked(errors.Is(reason, &Error{Code: CodeMultiConnect}))
	c.mu.Unlock()
	c.dropHeld(held, reason)
}

// endLoopLocked marks the reconnect loop finished. With restart, a
// connection that was lost while the loop was still finishing (its closed
// hook saw the loop running and left the work to it) starts a new loop.
func (c *Client) endLoopLocked(restart bool) {
	close(c.loop)
	c.loop = nil
	if restart && !c.closed && c.cur != nil && c.cur.isDone() {
		c.startLoopLocked()
	}
}

// startLoopLocked starts the reconnect loop; the caller holds c.mu and
// has checked that none runs.
func (c *Client) startLoopLocked() {
	c.loop = make(chan struct{})
	c.wg.Add(1)
	go c.reconnectLoop()
}

// sendBuffer holds whole messages while the client reconnects.
type sendBuffer struct {
	items []*heldMsg
	bytes int
}

// heldMsg is one message waiting for the next connection.
type heldMsg struct {
	body  wire.Message
	typed bool
	req   *heldReq // nil for a plain send
}

// heldReq is a request waiting in the buffer; its caller waits on ch.
type heldReq struct {
	id   string
	ch   chan reqResult
	sent *conn // the connection it was written to (Client.mu)
	gone bool  // the caller stopped waiting (Client.mu)
}

func (b *sendBuffer) take() []*heldMsg {
	items := b.items
	b.items, b.bytes = nil, 0
	return items
}

func heldSize(m *wire.Message) int { return len(m.Type) + len(m.Data) + 64 }

// route returns the live connection for a message, or holds the message
// (held is true) while the client reconnects with a buffer configured.
func (c *Client) route(body *wire.Message, typed bool, req *heldReq) (cn *conn, held bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false, errClosed("client")
	}
	// Held while the loop runs, and also between a connection's end and
	// the start of the loop (its closed hook may not have run yet): the
	// loop, started then, flushes the buffer.
	dead := c.cur == nil || c.cur.isDone()
	if c.o.ReconnectBufferSize > 0 && (c.loop != nil || (dead && c.o.AutoReconnect && c.everUp && !c.gaveUp)) {
		// Refused now rather than when the buffer is flushed: a frame is
		// its smallest form.
		if err := overSendLimit(body, c.o.MaxSendSize, true); err != nil {
			return nil, false, err
		}
		size := heldSize(body)
		if c.buf.bytes+size > c.o.ReconnectBufferSize {
			return nil, false, fmt.Errorf("%w: %d bytes held while reconnecting, this message needs %d more than ReconnectBufferSize (%d) allows", ErrBufferFull, c.buf.bytes, size, c.o.ReconnectBufferSize)
		}
		// The caller may reuse its slice once Send returns: keep a copy.
		body.Data = append([]byte(nil), body.Data...)
		c.buf.items = append(c.buf.items, &heldMsg{body: *body, typed: typed, req: req})
		c.buf.bytes += size
		return nil, true, nil
	}
	if c.cur == nil || c.cur.isDone() {
		return nil, false, ErrNotConnected
	}
	return c.cur, false, nil
}

// requeueLocked puts messages a dead connection never wrote at the front
// of the reconnect buffer (they were accepted before anything held since),
// as far as ReconnectBufferSize allows, and returns how many did not fit
// or cannot wait (the client is closed); c.mu held.
func (c *Client) requeueLocked(msgs []heldMsg) (lost int) {
	if c.closed {
		return len(msgs)
	}
	var front []*heldMsg
	for i := range msgs {
		size := heldSize(&msgs[i].body)
		if c.buf.bytes+size > c.o.ReconnectBufferSize {
			lost = len(msgs) - i
			break
		}
		c.buf.bytes += size
		front = append(front, &msgs[i])
	}
	c.buf.items = append(front, c.buf.items...)
	return lost
}

// flushBuffer writes the held messages on cn in order, after OnConnect
// has run (what it sends goes first), then ends the reconnect loop in the
// same critical section that finds the buffer empty.
func (c *Client) flushBuffer(cn *conn) {
	ctx, cancel := c.stopContext()
	defer cancel()
	c.hooks.waitRan(cn.connectSeq, c.stop)
	for {
		c.mu.Lock()
		items := c.buf.take()
		if len(items) == 0 {
			c.endLoopLocked(true)
			c.mu.Unlock()
			return
		}
		live := items[:0]
		for _, it := range items {
			if it.req != nil {
				if it.req.gone {
					continue
				}
				it.req.sent = cn
			}
			live = append(live, it)
		}
		c.mu.Unlock()
		for i, it := range live {
			if err := c.writeHeld(ctx, cn, it); err != nil && it.req == nil {
				c.dropHeld(live[i:i+1], err)
			}
		}
	}
}

// writeHeld queues one held message on cn; a request is registered first
// and its caller told of any failure.
func (c *Client) writeHeld(ctx context.Context, cn *conn, it *heldMsg) error {
	body := it.body
	if it.req != nil {
		if _, err := cn.register(it.req.id, waiter{ch: it.req.ch}); err != nil {
			it.req.ch <- reqResult{err: err}
			return err
		}
		body.Kind, body.ID = wire.Request, it.req.id
	}
	err := cn.send(ctx, &body, it.typed, queued)
	if it.req != nil {
		c.mu.Lock()
		gone := it.req.gone
		c.mu.Unlock()
		if err != nil || gone {
			cn.forget(it.req.id)
		}
		if err != nil {
			select {
			case it.req.ch <- reqResult{err: err}:
			default:
			}
		}
	}
	return err
}

// dropHeld fails held requests, reports held sends that are lost and
// returns how many were.
func (c *Client) dropHeld(items []*heldMsg, reason error) int {
	lost := 0
	for _, it := range items {
		if it.req != nil {
			select {
			case it.req.ch <- reqResult{err: wrapf(reason, "request held while reconnecting was not sent")}:
			default:
			}
			continue
		}
		lost++
	}
	if lost == 0 {
		return 0
	}
	c.mu.Lock()
	c.retired.BufferDropped += uint64(lost)
	c.mu.Unlock()
	err := wrapf(reason, "%d message(s) held while reconnecting were not sent", lost)
	c.o.Logger.Warn("sockhop: reconnect buffer dropped", "messages", lost, "reason", reason.Error())
	c.reportError(err)
	return lost
}

// send queues a message on the live connection, or holds it while the
// client reconnects.
func (c *Client) send(ctx context.Context, body wire.Message, typed bool) error {
	cn, held, err := c.route(&body, typed, nil)
	if held || err != nil {
		return err
	}
	return cn.send(ctx, &body, typed, queued)
}

// request sends a request on the live connection, or holds it while the
// client reconnects and waits for its reply either way.
func (c *Client) request(ctx context.Context, body wire.Message, typed bool) (*Message, error) {
	req := &heldReq{id: wire.NewUUID(), ch: make(chan reqResult, 1)}
	cn, held, err := c.route(&body, typed, req)
	if err != nil {
		return nil, err
	}
	if !held {
		return cn.request(ctx, &body, typed)
	}
	return c.awaitHeld(ctx, req, body.Type)
}

// requestFunc is request with the reply handed to fn (Client.RequestFunc).
func (c *Client) requestFunc(ctx context.Context, body wire.Message, typed bool, fn func(*Message, error)) error {
	if fn == nil {
		return errNoFunc
	}
	req := &heldReq{id: wire.NewUUID(), ch: make(chan reqResult, 1)}
	cn, held, err := c.route(&body, typed, req)
	if err != nil {
		return err
	}
	if !held {
		return cn.requestFunc(ctx, &body, typed, fn)
	}
	// Held while reconnecting: rare, and a goroutine per request waits
	// as Request's caller would.
	go func() { fn(c.awaitHeld(ctx, req, body.Type)) }()
	return nil
}

// awaitHeld waits for the reply to a request held while reconnecting.
func (c *Client) awaitHeld(ctx context.Context, req *heldReq, typ string) (*Message, error) {
	select {
	case r := <-req.ch:
		return r.m, r.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	req.gone = true
	sent := req.sent
	if sent == nil {
		for i, it := range c.buf.items {
			if it.req == req {
				c.buf.items = append(c.buf.items[:i], c.buf.items[i+1:]...)
				c.buf.bytes -= heldSize(&it.body)
				break
			}
		}
	}
	c.mu.Unlock()
	if sent != nil {
		sent.forget(req.id)
	}
	select {
	case r := <-req.ch: // the reply won the race
		return r.m, r.err
	default:
	}
	return nil, wrapf(ctx.Err(), "request %q got no reply (held while reconnecting)", typ)
}
