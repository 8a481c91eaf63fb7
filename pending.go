package sockhop

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// pendingTable holds the requests of one connection that wait for a reply
// (PROTOCOL.md 6). Unlike the reference's table (14.4) it is per connection,
// an entry is removed when its ctx ends, and every entry fails as soon as
// the connection ends.
type pendingTable struct {
	pmu     sync.Mutex
	pending map[string]waiter
	failed  error // set once the connection ended
	// panicked reports a RequestFunc function that panicked: it runs on
	// our goroutines, which must live on (as a handler's panic).
	panicked func(any)
	// gaveUp holds the ids of the last gaveUpKept requests given up (in
	// gaveUpRing, oldest at gaveUpNext).
	gaveUp     map[string]struct{}
	gaveUpRing []string
	gaveUpNext int
	gaveUpKept int
}

// waiter is how a request's caller gets its reply: a 1-buffered channel
// its goroutine waits on (Request), or a function called on the goroutine
// that has the reply in hand (RequestFunc), with stop to cancel the
// function's timeout. Whoever removes the entry from the table hands over
// the result, so it is handed over exactly once.
type waiter struct {
	ch   chan reqResult
	fn   func(*Message, error)
	stop func() bool
}

// hand gives r to w; the entry is already out of the table.
func (p *pendingTable) hand(w waiter, r reqResult) {
	if w.fn == nil {
		w.ch <- r // 1-buffered, sent once
		return
	}
	if w.stop != nil {
		w.stop()
	}
	p.call(w.fn, r)
}

// call runs a RequestFunc function, reporting a panic instead of ending
// the goroutine, the reader's included.
func (p *pendingTable) call(fn func(*Message, error), r reqResult) {
	defer func() {
		if v := recover(); v != nil && p.panicked != nil {
			p.panicked(v)
		}
	}()
	fn(r.m, r.err)
}

type reqResult struct {
	m   *Message
	err error
}

func (p *pendingTable) init(panicked func(any), keep int) {
	p.pending = make(map[string]waiter)
	p.panicked = panicked
	p.gaveUpKept = max(keep, 1)
}

// deliver hands a reply to its waiting caller. A reply nobody waits for is
// late when it answers a request given up recently (its ctx ended first):
// the peer did nothing wrong. Otherwise the peer answered twice or
// something it was never asked: a protocol error.
func (p *pendingTable) deliver(id string, m *Message) (delivered, late bool) {
	p.pmu.Lock()
	w, ok := p.pending[id]
	delete(p.pending, id)
	if !ok {
		if _, late = p.gaveUp[id]; late {
			delete(p.gaveUp, id)
		}
	}
	p.pmu.Unlock()
	if ok {
		p.hand(w, reqResult{m: m})
	}
	return ok, late
}

// rememberLocked records a request given up, the last gaveUpKept of
// them (MaxPendingRequests: as many as could have been waiting), so that
// their late replies are not taken for protocol errors; pmu held.
func (p *pendingTable) rememberLocked(id string) {
	if p.gaveUp == nil {
		p.gaveUp = make(map[string]struct{})
	}
	if len(p.gaveUpRing) < p.gaveUpKept {
		p.gaveUpRing = append(p.gaveUpRing, id)
	} else {
		delete(p.gaveUp, p.gaveUpRing[p.gaveUpNext])
		p.gaveUpRing[p.gaveUpNext] = id
		p.gaveUpNext = (p.gaveUpNext + 1) % p.gaveUpKept
	}
	p.gaveUp[id] = struct{}{}
}

// failPending fails every waiting request and returns how many there were.
// Functions are called after the table's lock is released: they are the
// application's code.
func (p *pendingTable) failPending(reason error) int {
	p.pmu.Lock()
	p.failed = reason
	ws := make([]waiter, 0, len(p.pending))
	for id, w := range p.pending {
		ws = append(ws, w)
		delete(p.pending, id)
	}
	p.pmu.Unlock()
	for _, w := range ws {
		p.hand(w, reqResult{err: fmt.Errorf("%w before the reply came: %w", ErrDisconnected, reason)})
	}
	return len(ws)
}

func (p *pendingTable) pendingCount() int {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return len(p.pending)
}

// register adds a waiting request under id and says whether it is the only
// one waiting.
func (c *conn) register(id string, w waiter) (alone bool, err error) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.failed != nil {
		return false, c.sendClosedErr()
	}
	if len(c.pending) >= c.o.MaxPendingRequests {
		c.stats.limits.Add(1)
		return false, newError(CodeTooManyRequests, fmt.Sprintf("%d requests already wait for replies on this connection (MaxPendingRequests)", c.o.MaxPendingRequests), nil)
	}
	c.pending[id] = w
	return len(c.pending) == 1, nil
}

// forget removes a request that will not be waited for any more, with its
// timeout, and says whether it was still there (then nobody else will hand
// it a result).
func (c *conn) forget(id string) bool {
	c.pmu.Lock()
	w, ok := c.pending[id]
	delete(c.pending, id)
	if ok {
		c.rememberLocked(id) // its reply may still come
	}
	c.pmu.Unlock()
	if ok && w.stop != nil {
		w.stop()
	}
	return ok
}

// request sends body as a callback request and waits for the reply, for
// ctx's deadline at most. The entry is registered before the write, so a
// reply cannot beat it, and removed on every way out.
func (c *conn) request(ctx context.Context, body *wire.Message, typed bool) (*Message, error) {
	if on, _ := ctx.Value(inlineKey{}).(*conn); on == c {
		return nil, ErrInlineRequest
	}
	id := wire.NewUUID()
	ch := make(chan reqResult, 1)
	if err := c.sendRequest(ctx, body, typed, id, waiter{ch: ch}); err != nil {
		return nil, err
	}
	return c.await(ctx, id, ch, body.Type)
}

// sendRequest registers w under id and sends body as request id.
func (c *conn) sendRequest(ctx context.Context, body *wire.Message, typed bool, id string, w waiter) error {
	alone, err := c.register(id, w)
	if err != nil {
		return err
	}
	return c.sendRegistered(ctx, body, typed, id, alone)
}

// sendRegistered sends body as request id, registered already; alone says
// it is the only request in flight.
func (c *conn) sendRegistered(ctx context.Context, body *wire.Message, typed bool, id string, alone bool) error {
	body.Kind, body.ID = wire.Request, id
	// A request alone in flight is written by its caller, who waits
	// anyway: no goroutine wake-up on the way out. With others in flight
	// the writer goroutine gathers them into one write, which costs less
	// than a write each.
	how := queued
	if alone {
		how = writeNow
	}
	if err := c.send(ctx, body, typed, how); err != nil {
		c.forget(id)
		return err
	}
	return nil
}

// requestFunc sends body as a callback request and returns; fn gets the
// reply, or the error that ended the wait, exactly once (see
// Client.RequestFunc). It fails without calling fn if the request could
// not be sent.
func (c *conn) requestFunc(ctx context.Context, body *wire.Message, typed bool, fn func(*Message, error)) error {
	if fn == nil {
		return errNoFunc
	}
	if err := ctx.Err(); err != nil {
		return noReplyErr(body.Type, err)
	}
	id := wire.NewUUID()
	alone, err := c.register(id, waiter{fn: fn})
	if err != nil {
		return err
	}
	if ctx.Done() != nil {
		c.armTimeout(ctx, id, body.Type, fn)
	}
	return c.sendRegistered(ctx, body, typed, id, alone)
}

// armTimeout fails request id with fn when ctx ends first. It is armed
// after the entry is in the table, so the timeout always finds it unless
// the result was handed over already: whoever takes the entry out of the
// table first, the reply, the end of the connection or this, hands over
// the result.
func (c *conn) armTimeout(ctx context.Context, id, typ string, fn func(*Message, error)) {
	stop := context.AfterFunc(ctx, func() {
		if c.forget(id) {
			c.stats.timedOut.Add(1)
			c.call(fn, reqResult{err: noReplyErr(typ, ctx.Err())})
		}
	})
	c.pmu.Lock()
	w, ok := c.pending[id]
	if ok {
		w.stop = stop
		c.pending[id] = w
	}
	c.pmu.Unlock()
	if !ok {
		stop() // handed over already
	}
}

var errNoFunc = errors.New("sockhop: RequestFunc needs a function to call with the reply (it was nil)")

// noReplyErr is the error of a request whose ctx ended before its reply.
func noReplyErr(typ string, cause error) error {
	return wrapf(cause, "request %q got no reply", typ)
}

// await waits for the reply to request id.
func (c *conn) await(ctx context.Context, id string, ch chan reqResult, typ string) (*Message, error) {
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		c.forget(id)
		select {
		case r := <-ch: // the reply won the race
			return r.m, r.err
		default:
		}
		c.stats.timedOut.Add(1)
		return nil, noReplyErr(typ, ctx.Err())
	}
}
