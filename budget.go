package sockhop

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// The server-wide memory budget (ServerOptions.MemoryBudget).
//
// Per-connection limits multiply by the number of connections: 500 peers
// that each announced a frame just under MaxMessageSize once held 2.1 GB.
// The budget bounds the sum. Every byte a server buffers for a peer is
// charged to it while held:
//
//   - a partly received message: a read buffer grown for a long line, and
//     the buffer of a large frame, which is made as the frame's bytes
//     arrive (a header alone costs a first step of 64 KiB, not the size it
//     announces), or whole when the budget has room to spare;
//   - received messages, from the inbox until their handler returns;
//   - the outbound queue.
//
// When the budget is short, those who hold the most wait: a reader that
// needs a larger buffer waits for budget, and one whose messages are
// still queued or being handled waits before queueing another; a sender
// whose queue holds bytes waits for it to drain. A reader that waits
// stops reading, which pushes back on its peer through TCP. Each
// connection may always have one message in each direction beyond the
// budget (a single message is bounded by MaxMessageSize), so that no
// connection waits for a budget that only its own progress would free.
//
// A peer that holds budget for a partly received message and makes no
// progress for MemoryBudgetStall while the budget is short (it stopped
// sending in the middle of a frame, or its reader waits for budget that
// does not come) is cut with ErrMemoryBudget.

// CodeMemoryBudget: a peer held part of the server's memory budget
// without progress while the budget was short, and was disconnected.
const CodeMemoryBudget = "ERR_MEMORY_BUDGET"

// ErrMemoryBudget matches errors of CodeMemoryBudget (errors.Is).
var ErrMemoryBudget = &Error{Code: CodeMemoryBudget, Msg: "memory budget held without progress"}

// Defaults of the budget's options.
const (
	DefaultMemoryBudget      = 256 << 20
	DefaultMemoryBudgetStall = 10 * time.Second
	DefaultMaxHandlers       = 1024
)

type budget struct {
	limit int64
	stall time.Duration

	used    atomic.Int64
	waiters atomic.Int32
	mu      sync.Mutex
	freed   chan struct{} // closed and replaced when bytes are released while someone waits
}

func newBudget(limit int64, stall time.Duration) *budget {
	return &budget{limit: limit, stall: stall, freed: make(chan struct{})}
}

// charge adds n bytes (negative: releases) unconditionally: for bytes
// already in memory.
func (b *budget) charge(n int) {
	if b.used.Add(int64(n)); n < 0 && b.waiters.Load() > 0 {
		b.mu.Lock()
		close(b.freed)
		b.freed = make(chan struct{})
		b.mu.Unlock()
	}
}

// fits reports whether n more bytes fit.
func (b *budget) fits(n int) bool { return b.used.Load()+int64(n) <= b.limit }

// short reports whether the budget is used up or someone waits for it.
func (b *budget) short() bool { return b.used.Load() >= b.limit || b.waiters.Load() > 0 }

// tryTake charges n bytes if they fit.
func (b *budget) tryTake(n int) bool {
	for {
		u := b.used.Load()
		if u+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

// await waits until cond holds, re-checking it whenever budget is
// released. It gives up when done closes (false, false) or when stall is
// set and passes (false, true).
func (b *budget) await(cond func() bool, done <-chan struct{}, stall time.Duration) (ok, stalled bool) {
	if cond() {
		return true, false
	}
	b.waiters.Add(1)
	defer b.waiters.Add(-1)
	var timeout <-chan time.Time
	if stall > 0 {
		t := time.NewTimer(stall)
		defer t.Stop()
		timeout = t.C
	}
	for {
		b.mu.Lock()
		ch := b.freed
		b.mu.Unlock()
		// Checked after reading freed: a release after this check closes
		// the channel read before it.
		if cond() {
			return true, false
		}
		select {
		case <-ch:
		case <-done:
			return false, false
		case <-timeout:
			return false, true
		}
	}
}

// budgetError is the error a peer is cut with.
func (c *conn) budgetError(held int64, what string) error {
	return newError(CodeMemoryBudget, fmt.Sprintf("peer %s held %d bytes of the server's memory budget (MemoryBudget %d bytes, in short supply) %s for %s (MemoryBudgetStall); disconnected", c.remote(), held, c.bud.limit, what, c.bud.stall), nil)
}

// useBudget puts the connection's buffers on the server's budget and its
// request handlers under the server's handler bound.
func (c *conn) useBudget(b *budget, handlers chan struct{}) {
	c.handlerSlots = handlers
	if b == nil {
		return
	}
	c.bud = b
	c.q.bud = b
	c.dec.SetMemory(c.reserveRx, c.giveRx)
}

// reserveRx is the decoder's SetMemory reserve, on the reader: the next
// buffer of a partly received message of need bytes, have of them
// received.
func (c *conn) reserveRx(have, need int) (int, error) {
	b := c.bud
	size := need
	if have < need && b.used.Load()+int64(need) > b.limit/2 {
		// Short of room to spare: grow with the bytes that arrive.
		size = wire.GrowStep(have, need)
	}
	var stall time.Duration
	if c.rxHeld.Load() > 0 {
		stall = b.stall // holding budget: waiting is no progress
	}
	ok, stalled := b.await(func() bool { return b.tryTake(size) }, c.done, stall)
	if !ok {
		if stalled {
			c.stats.budgetCuts.Add(1)
			return 0, c.budgetError(c.rxHeld.Load(), "for a partly received message while waiting for more")
		}
		return 0, errClosed("connection")
	}
	c.rxHeld.Add(int64(size))
	return size, nil
}

// giveRx is the decoder's SetMemory give.
func (c *conn) giveRx(n int) {
	c.rxHeld.Add(-int64(n))
	c.bud.charge(-n)
}

// readHolding reads while a partly received message holds budget: a read
// that brings nothing for MemoryBudgetStall while the budget is short
// cuts the peer. With plenty of budget a slow sender is no threat, and
// the read goes on. limit (zero: none) is the caller's own deadline
// (IdleTimeout, MinReadRate), whose timeout is returned as it is.
func (c *conn) readHolding(p []byte, limit time.Time) (int, error) {
	for {
		dl, stallDl := time.Now().Add(c.bud.stall), true
		if !limit.IsZero() && limit.Before(dl) {
			dl, stallDl = limit, false
		}
		_ = c.nc.SetReadDeadline(dl)
		c.readDeadline = true
		n, err := c.nc.Read(p)
		c.stats.bytesIn.Add(uint64(n))
		if err == nil || n > 0 || !isTimeout(err) {
			return n, err
		}
		if !stallDl {
			return 0, err // the caller's deadline (IdleTimeout, MinReadRate): it says which
		}
		if c.bud.short() {
			c.stats.budgetCuts.Add(1)
			return 0, c.budgetError(c.rxHeld.Load(), "for a partly received message, sending nothing,")
		}
	}
}

// chargeMsg charges a received message to the budget before it is
// queued for its handler. A large frame's buffer was charged as it was
// read, and its charge carries over; otherwise the reader first waits
// while the budget is short and this connection has messages queued or
// being handled: it is then the reader that pauses. It reports false if
// the connection closed first.
func (c *conn) chargeMsg(m *Message) bool {
	b := c.bud
	if n := c.carried; n > 0 {
		c.carried = 0
		c.rxMsgBytes.Add(int64(n))
		m.charged = n
		return true
	}
	size := msgSize(m)
	ok, stalled := true, false
	if c.rxMsgBytes.Load() != 0 && !b.fits(size) { // no closure made on the common path
		ok, stalled = b.await(func() bool { return c.rxMsgBytes.Load() == 0 || b.fits(size) }, c.done, b.stall)
	}
	if !ok {
		if stalled {
			// Its handlers hold budget and do not finish (one may wait for
			// a reply this reader would read): cut rather than wait on.
			c.stats.budgetCuts.Add(1)
			err := c.budgetError(c.rxMsgBytes.Load(), "in messages its handlers did not finish")
			c.reportError(err)
			c.close(err, false)
		}
		return false
	}
	b.charge(size)
	c.rxMsgBytes.Add(int64(size))
	m.charged = size
	return true
}

// awaitOutbound holds the next handler back while the budget has no room
// for another message and this connection's outbound queue is not empty:
// a handler that answers (an echo to a peer that does not read) would
// only make an answer that waits for room, memory nobody accounts for.
// Its messages wait in the inbox instead, and the reader behind them
// pauses. Called by the dispatcher; one atomic load while there is room.
func (c *conn) awaitOutbound() {
	b := c.bud
	if b == nil || !c.noRoomForOne() {
		return
	}
	b.await(func() bool { return !c.noRoomForOne() || c.q.queued() == 0 }, c.done, 0)
}

// noRoomForOne reports whether the budget lacks room for a message of the
// largest size.
func (c *conn) noRoomForOne() bool {
	return c.bud.used.Load()+int64(c.o.MaxMessageSize) > c.bud.limit
}

// dropCarried releases the charge of a frame just read that was not
// queued for a handler (a reply, a protocol message, one handled inline).
func (c *conn) dropCarried() {
	if n := c.carried; n > 0 {
		c.carried = 0
		c.bud.charge(-n)
	}
}

// unchargeMsg releases a message's charge once its handler has returned
// (or it was dropped).
func (c *conn) unchargeMsg(m *Message) {
	if n := m.charged; n > 0 {
		m.charged = 0
		c.rxMsgBytes.Add(-int64(n))
		c.bud.charge(-n)
	}
}

// budgetHeld returns the bytes this connection holds of the budget.
func (c *conn) budgetHeld() int64 {
	if c.bud == nil {
		return 0
	}
	return c.rxHeld.Load() + c.rxMsgBytes.Load() + int64(c.q.queued())
}

// budgetDefaults fills in and checks the budget's options and makes the
// budget and the handler slots.
func (s *Server) budgetDefaults() error {
	o := &s.o
	if o.MemoryBudget == 0 {
		o.MemoryBudget = DefaultMemoryBudget
	}
	if o.MemoryBudgetStall == 0 {
		o.MemoryBudgetStall = DefaultMemoryBudgetStall
	}
	if o.MaxHandlers == 0 {
		o.MaxHandlers = DefaultMaxHandlers
	}
	if o.MemoryBudgetStall < 0 {
		return newError(CodeBadOption, fmt.Sprintf("MemoryBudgetStall %s is negative", o.MemoryBudgetStall), nil)
	}
	if o.MemoryBudget > 0 {
		if o.MemoryBudget < 2*int64(o.MaxMessageSize) {
			return newError(CodeBadOption, fmt.Sprintf("MemoryBudget %d is less than twice MaxMessageSize (%d): a budget must hold a message being received and one being handled", o.MemoryBudget, o.MaxMessageSize), nil)
		}
		s.bud = newBudget(o.MemoryBudget, o.MemoryBudgetStall)
	}
	if o.MaxHandlers > 0 {
		s.handlerSlots = make(chan struct{}, o.MaxHandlers)
	}
	return nil
}
