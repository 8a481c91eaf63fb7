package sockhop

import (
	"context"
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
	pending map[string]chan reqResult
	failed  error // set once the connection ended
}

type reqResult struct {
	m   *Message
	err error
}

func (p *pendingTable) init() { p.pending = make(map[string]chan reqResult) }

// deliver hands a reply to its waiting caller; false if nobody waits.
func (p *pendingTable) deliver(id string, m *Message) bool {
	p.pmu.Lock()
	ch, ok := p.pending[id]
	delete(p.pending, id)
	p.pmu.Unlock()
	if ok {
		ch <- reqResult{m: m} // 1-buffered, sent once
	}
	return ok
}

// failPending fails every waiting request and returns how many there were.
func (p *pendingTable) failPending(reason error) int {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.failed = reason
	n := len(p.pending)
	for id, ch := range p.pending {
		ch <- reqResult{err: fmt.Errorf("%w before the reply came: %w", ErrDisconnected, reason)}
		delete(p.pending, id)
	}
	return n
}

func (p *pendingTable) pendingCount() int {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return len(p.pending)
}

// register adds a waiting request under id and says whether it is the only
// one waiting.
func (c *conn) register(id string, ch chan reqResult) (alone bool, err error) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.failed != nil {
		return false, c.sendClosedErr()
	}
	if len(c.pending) >= c.o.MaxPendingRequests {
		c.stats.limits.Add(1)
		return false, newError(CodeTooManyRequests, fmt.Sprintf("%d requests already wait for replies on this connection (MaxPendingRequests)", c.o.MaxPendingRequests), nil)
	}
	c.pending[id] = ch
	return len(c.pending) == 1, nil
}

// forget removes a request that will not be waited for any more.
func (c *conn) forget(id string) {
	c.pmu.Lock()
	delete(c.pending, id)
	c.pmu.Unlock()
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
	alone, err := c.register(id, ch)
	if err != nil {
		return nil, err
	}
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
		return nil, err
	}
	return c.await(ctx, id, ch, body.Type)
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
		return nil, fmt.Errorf("sockhop: request %q got no reply: %w", typ, ctx.Err())
	}
}
