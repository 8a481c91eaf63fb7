package sockhop

import (
	"sync"
	"sync/atomic"
	"time"
)

// Running handlers on the reading goroutine.
//
// Handing a message from the reader to another goroutine costs a goroutine
// wake-up, and on a small virtual machine a wake-up is a futex call and an
// inter-processor interrupt: measured on a 2-vCPU box, it was about 30 µs of
// CPU per request/reply round trip, more than everything else the server
// did for the request. So when a message may start at once (nothing waits
// before it), the goroutine that read it runs its handler itself, the way a
// hand-written loop would.
//
// A handler may block, though: on a Request over its own connection, whose
// reply only a reader can read, or on anything else. So a handler running
// on the reader is watched: when it waits for a reply on its connection,
// the reading is handed to another goroutine at once (the handler is
// "promoted"); when it is seen running at two looks of the watcher 1 ms
// apart, likewise. The watcher looks every inlineQuiet while it finds no
// handler running, every inlineTick while it does: a blocking handler
// stops its connection for about 5 ms at most, and never deadlocks it.
//
// The watcher's own wake-ups are not free: looking every millisecond,
// always, added about 15 µs to the median request/reply round trip on the
// 2-vCPU machine (1,000 timer wake-ups a second competing with the
// traffic), against about 2 µs looking every 4 ms.

// inlineTick is how soon the watcher looks again after it saw a handler
// running on a reader; inlineQuiet, after it saw none.
const (
	inlineTick  = time.Millisecond
	inlineQuiet = 4 * time.Millisecond
)

// inlineForget is how many looks without an inline run the watcher keeps
// a connection on its list.
const inlineForget = 100

// inlineState is the part of a conn that runs handlers on its reader.
type inlineState struct {
	inlineOK bool // the conn is a socket (set once, in newConn)
	// inlRun is the number of the inline run in progress, 0 if none. The
	// reader sets it; whoever promotes the run swaps it back to 0, which
	// tells the reader, when its handler returns, that it is no longer
	// the reader.
	inlRun atomic.Uint64
	inlSeq atomic.Uint64 // inline runs so far; numbers them
	// watched: the conn is on inlineWatch's list.
	watched atomic.Bool
	// Owned by the watcher.
	seenRun, seenSeq uint64
	quietTicks       int
}

// runInline runs m (a request holding a reqSem slot, or a plain message
// with the inbox marked busy) on the reading goroutine. It reports whether
// the caller is still the reader, that is, the run was not promoted.
func (c *conn) runInline(m *Message) bool {
	seq := c.inlSeq.Add(1)
	c.inlRun.Store(seq)
	if !c.watched.Load() {
		inlineWatch.add(c)
	}
	req := m.IsRequest() // only a request has a reply to leave for the reader
	if req {
		c.wmu.Lock()
		c.inlineMsg = m
		c.wmu.Unlock()
	}
	c.run(m)
	if !c.inlRun.CompareAndSwap(seq, 0) {
		return false // promoted, which also cleared inlineMsg
	}
	if req {
		c.wmu.Lock()
		c.inlineMsg = nil
		c.wmu.Unlock()
	}
	return true
}

// promoteInline hands the reading on to a new goroutine if a handler runs on
// the reader right now. Requests call it before they wait for a reply.
func (c *conn) promoteInline() {
	if run := c.inlRun.Load(); run != 0 {
		c.promote(run)
	}
}

// promote hands the reading on if inline run number run is still going.
func (c *conn) promote(run uint64) {
	if c.inlRun.CompareAndSwap(run, 0) {
		c.stats.promoted.Add(1)
		// A reply the handler sends from now on is written at once; one
		// it already left for the reader is written by the new reader
		// before its first read.
		c.wmu.Lock()
		c.inlineMsg = nil
		c.wmu.Unlock()
		// The role is suspended while its holder runs the handler, so
		// the reading cannot have ended and the dispatcher cannot be
		// waiting for the workers yet.
		c.workers.Add(1)
		go c.worker(readRole)
	}
}

// inlineWatch is the process-wide watcher of handlers running on readers.
// Its goroutine runs only while some connection ran a handler inline in
// the last inlineForget looks.
var inlineWatch watcher

type watcher struct {
	mu      sync.Mutex
	conns   []*conn
	running bool
}

func (w *watcher) add(c *conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.watched.Load() {
		return
	}
	c.seenRun, c.seenSeq, c.quietTicks = 0, c.inlSeq.Load(), 0
	c.watched.Store(true)
	w.conns = append(w.conns, c)
	if !w.running {
		w.running = true
		go w.loop()
	}
}

func (w *watcher) loop() {
	for wait := inlineQuiet; wait > 0; wait = w.sweep() {
		time.Sleep(wait)
	}
}

// sweep promotes the runs seen at two looks in a row and forgets the
// connections that stayed quiet. It returns how long to wait before the
// next look, 0 when no connection is left.
func (w *watcher) sweep() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := w.conns[:0]
	next := inlineQuiet
	for _, c := range w.conns {
		run := c.inlRun.Load()
		if run != 0 {
			if run == c.seenRun {
				c.promote(run)
			} else {
				next = inlineTick // look again soon: it may be a long one
			}
		}
		c.seenRun = run
		seq := c.inlSeq.Load()
		if seq != c.seenSeq || run != 0 {
			c.seenSeq, c.quietTicks = seq, 0
		} else {
			c.quietTicks++
		}
		if c.quietTicks < inlineForget && !c.isDone() || run != 0 {
			keep = append(keep, c)
			continue
		}
		// Forget it. A run that started just now saw watched still set;
		// its count, read after the flag is cleared, tells (atomics are
		// sequentially consistent), and then the conn stays.
		c.watched.Store(false)
		if c.inlSeq.Load() != seq || c.inlRun.Load() != 0 {
			c.watched.Store(true)
			keep = append(keep, c)
		}
	}
	clear(w.conns[len(keep):])
	w.conns = keep
	if len(keep) == 0 {
		w.running = false
		return 0
	}
	return next
}
