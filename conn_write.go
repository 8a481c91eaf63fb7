package sockhop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// writeState is the write side of a conn. Messages are encoded by the
// sending goroutine, under wmu, in the transmit mode of that instant, into
// the open segment; bytes shared by many connections (a broadcast) join the
// queue as segments of their own, without a copy. The writer takes all the
// segments queued and writes them with one writev.
type writeState struct {
	wmu      sync.Mutex
	open     []byte   // owned buffer new messages are encoded into
	segs     [][]byte // earlier segments, in order
	owned    []bool   // owned[i]: segs[i] is ours, to reuse once written
	queuedN  int      // bytes in segs and open
	txBinary bool
	closing  bool
	// Set when our transition line was queued for a peer that may be Node:
	// segments past holdSegs wait until holdUntil (PROTOCOL.md 5.5).
	holdSegs  int
	holdUntil time.Time
	waiters   int
	spaceCh   chan struct{} // closed and replaced when the queue drains
	// writing: a writer goroutine runs. It is started when something is
	// queued and ends when the queue is empty, so an idle connection has
	// no writer (and no stack for one).
	writing  bool
	canWrite bool // the conn was started: until then messages only queue
	writeEnd bool // writeDone was closed: the write side is finished
	// inlineMsg is the request whose handler runs on the reader now;
	// deferred: its reply (or earlier ones) is queued for the reader to
	// write just before it next reads from the socket, so that the
	// replies to a batch of requests read at once leave in one write.
	inlineMsg *Message
	deferred  bool
}

// sendHow says who writes what send queues.
type sendHow uint8

const (
	// queued: the writer goroutine, which gathers a burst into one write
	// (fire-and-forget sends).
	queued sendHow = iota
	// writeNow: the caller, when no writer runs (what is queued goes
	// with it: only replies left for the reader can be), instead of
	// waking a writer goroutine; for a caller about to wait anyway (a
	// request). On a round trip that is one goroutine switch less.
	writeNow
	// reply: as writeNow, except that the reply to the request whose
	// handler runs on the reader is left for the reader to write before
	// its next socket read.
	reply
)

// Segment sizes: shared bytes shorter than sharedMin are copied into the
// open segment (an iovec entry costs more than a small copy); a message
// larger than largeMsg gets a segment of its own, sized exactly and taken
// from framePools, so it is copied once and its memory reused; written
// buffers up to poolMax go back to bufPool, larger ones to framePools. No
// buffer stays with a connection once its queue is written, so an idle
// connection holds no write buffer at all.
const (
	sharedMin = 2 << 10
	largeMsg  = 64 << 10
	poolMax   = 256 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// seal ends the open segment; wmu held.
func (w *writeState) seal() {
	if len(w.open) > 0 {
		w.segs = append(w.segs, w.open)
		w.owned = append(w.owned, true)
		w.open = nil
	}
}

// openBuf returns the open segment, taking a pooled buffer if there is none.
func (w *writeState) openBuf() []byte {
	if w.open == nil {
		w.open = (*bufPool.Get().(*[]byte))[:0]
	}
	return w.open
}

func (w *writeState) init() {
	w.spaceCh = make(chan struct{})
}

// startWriterLocked makes sure a writer runs for what was just queued; wmu
// held.
func (c *conn) startWriterLocked() {
	if c.writing || c.writeEnd || !c.canWrite {
		return
	}
	c.writing = true
	c.wg.Add(1)
	go c.writeLoop()
}

// endWriteLocked marks the write side finished for good; wmu held.
func (c *conn) endWriteLocked() {
	if !c.writeEnd {
		c.writeEnd = true
		close(c.writeDone)
	}
}

// send queues one message, waiting while the queue is full. typed marks a
// typed buffer, which needs binary mode; how says who writes it.
func (c *conn) send(ctx context.Context, m *wire.Message, typed bool, how sendHow) error {
	for {
		c.wmu.Lock()
		if c.closing {
			c.wmu.Unlock()
			return c.sendClosedErr()
		}
		if typed && !c.txBinary {
			c.wmu.Unlock()
			return ErrNoBinaryMode
		}
		if c.txBinary {
			if err := wire.CheckFrame(m); err != nil {
				c.wmu.Unlock()
				return newError(CodeSerializeFailed, "cannot send in binary mode", err)
			}
		}
		if m.Bytes && c.txBinary && len(m.Data) >= largeMsg && c.queuedN == 0 && c.writerIdleLocked() {
			// Nothing to keep in order with: write the bytes from the
			// caller's buffer, without copying them into the queue.
			c.countOut()
			var head [320]byte
			h := wire.AppendFrameHeader(head[:0], m, len(m.Data))
			return c.writeNowLocked([][]byte{h, m.Data, wire.AppendFrameTrailer(nil, m)}, nil, true)
		}
		if c.queuedN == 0 || c.queuedN+encodedSize(m) <= c.o.MaxQueueBytes {
			c.appendLocked(m)
			switch {
			case how == reply && c.inlineMsg != nil && c.inlineMsg.id == m.ID && c.writerIdleLocked():
				c.deferred = true
			case how != queued && c.writerIdleLocked():
				c.writeInline() // unlocks wmu
				return nil
			default:
				c.startWriterLocked()
			}
			c.wmu.Unlock()
			return nil
		}
		// Whatever fills the queue must be on its way out: replies left
		// for the reader (which may be this very goroutine) included.
		c.startWriterLocked()
		ch := c.spaceCh
		c.waiters++
		c.wmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.wmu.Lock()
			c.waiters--
			c.wmu.Unlock()
			return fmt.Errorf("%w (%d bytes queued, limit MaxQueueBytes %d): %w", ErrQueueFull, c.queued(), c.o.MaxQueueBytes, ctx.Err())
		case <-c.done:
			return c.sendClosedErr()
		}
		c.wmu.Lock()
		c.waiters--
		c.wmu.Unlock()
	}
}

func (c *conn) sendClosedErr() error {
	if c.isDone() {
		return fmt.Errorf("%w: %w", ErrDisconnected, c.closeErr)
	}
	return ErrDisconnected
}

func (c *conn) queued() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.queuedN
}

// sendControl queues a message the reader produces by itself (pong,
// handshake reply). It never waits: a peer that makes us queue answers it
// does not read is cut off as a slow consumer.
func (c *conn) sendControl(m *wire.Message) {
	c.wmu.Lock()
	if c.closing {
		c.wmu.Unlock()
		return
	}
	if c.queuedN > 0 && c.queuedN+encodedSize(m) > c.o.MaxQueueBytes {
		c.wmu.Unlock()
		c.close(newError(CodeSlowConsumer, fmt.Sprintf("peer %s does not read what it asks for: outbound queue passed MaxQueueBytes (%d)", c.remote(), c.o.MaxQueueBytes), nil), false)
		return
	}
	c.appendLocked(m)
	c.startWriterLocked()
	c.wmu.Unlock()
}

// sendEncoded queues bytes already encoded for each mode (a broadcast). It
// never waits: a session whose queue is full is cut off.
func (c *conn) sendEncoded(enc *encodedPair) error {
	c.wmu.Lock()
	if c.closing {
		c.wmu.Unlock()
		return c.sendClosedErr()
	}
	b := enc.json
	if c.txBinary {
		b = enc.frame
		if enc.frameErr != nil {
			c.wmu.Unlock()
			return newError(CodeSerializeFailed, "cannot send in binary mode", enc.frameErr)
		}
	}
	if c.queuedN > 0 && c.queuedN+len(b) > c.o.MaxQueueBytes {
		c.wmu.Unlock()
		err := newError(CodeSlowConsumer, fmt.Sprintf("peer %s is a slow consumer: outbound queue passed MaxQueueBytes (%d)", c.remote(), c.o.MaxQueueBytes), nil)
		c.close(err, false)
		return err
	}
	if len(b) < sharedMin {
		c.open = append(c.openBuf(), b...)
	} else {
		c.seal()
		c.segs = append(c.segs, b) // shared by every session: never modified
		c.owned = append(c.owned, false)
	}
	c.queuedN += len(b)
	c.countOut()
	c.startWriterLocked()
	c.wmu.Unlock()
	return nil
}

// encodedPair is one message encoded once for each transmit mode.
type encodedPair struct {
	json, frame []byte
	frameErr    error
}

func encodePair(m *wire.Message, term []byte) *encodedPair {
	p := &encodedPair{json: wire.AppendJSONLine(nil, m, term)}
	p.frame, p.frameErr = wire.AppendFrame(nil, m)
	return p
}

func encodedSize(m *wire.Message) int {
	if m.Bytes {
		return wire.FrameSize(m) + len(m.Data)/3 + 64 // base64 in JSON mode
	}
	return wire.FrameSize(m) + 32
}

func (c *conn) appendLocked(m *wire.Message) {
	if size := encodedSize(m); size > largeMsg {
		c.seal()
		if c.txBinary {
			size = wire.FrameSize(m) // exact: no room reserved for base64
		}
		seg := c.encode(getFrame(size)[:0], m)
		c.segs = append(c.segs, seg)
		c.owned = append(c.owned, true)
		c.queuedN += len(seg)
	} else {
		n := len(c.open)
		c.open = c.encode(c.openBuf(), m)
		c.queuedN += len(c.open) - n
	}
	c.countOut()
}

// encode appends m in the current transmit mode; CheckFrame was done by the
// caller.
func (c *conn) encode(dst []byte, m *wire.Message) []byte {
	if c.txBinary {
		dst, _ = wire.AppendFrame(dst, m)
		return dst
	}
	return wire.AppendJSONLine(dst, m, c.txTerm)
}

// switchToBinary queues our transition line and flips the transmit mode in
// the same critical section, so no JSON can follow the line (5.5).
func (c *conn) switchToBinary(peerMaybeNode bool) bool {
	c.wmu.Lock()
	if c.closing || c.txBinary {
		c.wmu.Unlock()
		return false
	}
	n := len(c.open)
	c.open = wire.AppendJSONLine(c.openBuf(), &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}, c.txTerm)
	c.queuedN += len(c.open) - n
	c.countOut()
	c.txBinary = true
	if peerMaybeNode && c.o.TransitionHold > 0 {
		c.stats.guarded.Add(1)
		c.seal() // the line ends a segment: the hold starts after it
		c.holdSegs = len(c.segs)
		c.holdUntil = time.Now().Add(c.o.TransitionHold)
	}
	c.startWriterLocked()
	c.wmu.Unlock()
	return true
}

// writerIdleLocked reports whether the caller may write now: no writer
// runs, the conn was started and is not finished, and no transition hold
// is pending; wmu held.
func (c *conn) writerIdleLocked() bool {
	return !c.writing && c.canWrite && !c.writeEnd && c.holdSegs == 0
}

// flushDeferred writes the replies left for the reader (see sendHow); the
// reader calls it before every socket read.
func (c *conn) flushDeferred() {
	c.wmu.Lock()
	if c.deferred && c.writerIdleLocked() {
		c.writeInline() // unlocks wmu
		return
	}
	c.wmu.Unlock()
}

// writeInline writes what is queued from the calling goroutine, which
// holds wmu and found the writer idle (writerIdleLocked). It unlocks wmu.
func (c *conn) writeInline() {
	var segs, owned [2][]byte // what one message makes: no allocation
	batch, own, _ := c.takeLocked(segs[:0], owned[:0])
	_ = c.writeNowLocked(batch, own, false) // a failure closes the conn
}

// writeNowLocked writes batch as the writer, from the calling goroutine,
// which holds wmu and found the writer idle. It writes this batch only,
// for inlineWriteMax at most: what is left, and what others queue
// meanwhile, goes to a writer goroutine, so a caller is held up by one
// short write at most. borrowed marks a batch holding the caller's memory,
// which is copied before it is left for the writer. It unlocks wmu.
func (c *conn) writeNowLocked(batch, owned [][]byte, borrowed bool) error {
	c.writing = true
	c.wmu.Unlock()
	rest, err := c.write(batch, true)
	if err != nil {
		c.writeFailed(err)
		return err
	}
	restOwned := make([]bool, len(rest)) // cut owned segments: the GC has them
	if len(rest) == 0 {
		releaseSegs(owned)
	} else if borrowed {
		// The caller may reuse its buffer once we return.
		n := 0
		for _, s := range rest {
			n += len(s)
		}
		b := getFrame(n)[:0]
		for _, s := range rest {
			b = append(b, s...)
		}
		rest, restOwned = [][]byte{b}, []bool{true}
	}
	c.wmu.Lock()
	c.writing = false
	if len(rest) > 0 {
		// Ahead of everything queued meanwhile, which came after it.
		for _, s := range rest {
			c.queuedN += len(s)
		}
		c.segs = append(rest, c.segs...)
		c.owned = append(restOwned, c.owned...)
	}
	if len(c.segs) > 0 || len(c.open) > 0 {
		c.startWriterLocked()
	} else if c.closing {
		c.endWriteLocked()
	}
	c.wmu.Unlock()
	return nil
}

// takeLocked moves the queued segments into batch (and the pooled ones also
// into owned) for one write, up to a transition hold, which it reports;
// wmu held.
func (c *conn) takeLocked(batch, owned [][]byte) (_, _ [][]byte, holdFor time.Duration) {
	c.seal()
	c.deferred = false
	take := len(c.segs)
	if c.holdSegs > 0 {
		// Write up to and including the transition line now; the frames
		// after it wait until the hold ends.
		take = c.holdSegs
		holdFor = time.Until(c.holdUntil)
		c.holdSegs = 0
	}
	for i, seg := range c.segs[:take] {
		batch = append(batch, seg)
		if c.owned[i] {
			owned = append(owned, seg)
		}
		c.queuedN -= len(seg)
	}
	n := copy(c.segs, c.segs[take:])
	clear(c.segs[n:])
	c.segs = c.segs[:n]
	copy(c.owned, c.owned[take:])
	c.owned = c.owned[:n]
	if c.waiters > 0 {
		close(c.spaceCh)
		c.spaceCh = make(chan struct{})
	}
	return batch, owned, holdFor
}

// releaseSegs makes written segments of ours available again: small ones
// as open segments (bufPool), large ones as large segments or frame
// buffers (framePools).
func releaseSegs(owned [][]byte) {
	for _, b := range owned {
		if cap(b) <= poolMax {
			b = b[:0]
			bufPool.Put(&b)
		} else {
			putFrame(b)
		}
	}
}

// writeFailed ends the write side after a failed write: the connection
// closes and a graceful close learns why its flush failed.
func (c *conn) writeFailed(err error) {
	c.flushErr = err // read after writeDone is closed
	c.close(err, false)
	c.wmu.Lock()
	c.writing = false
	c.endWriteLocked()
	c.wmu.Unlock()
}

// writeLoop drains the queue, one write per round with everything queued,
// and ends when the queue is empty (the next message starts a new one).
// When the connection is closing, the writer that empties the queue also
// closes writeDone.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	var batch, owned [][]byte // reused between rounds
	for {
		// Let the goroutines that are about to queue something (replies
		// being encoded by request workers, a burst of sends) do so before
		// the batch is taken: fewer, fuller writes. Measured: 64 requests
		// in flight cost less than half as much per request.
		runtime.Gosched()
		c.wmu.Lock()
		if len(c.segs) == 0 && len(c.open) == 0 {
			c.writing = false
			if c.closing {
				c.endWriteLocked()
			}
			c.wmu.Unlock()
			return
		}
		var holdFor time.Duration
		batch, owned, holdFor = c.takeLocked(batch[:0], owned[:0])
		c.wmu.Unlock()

		if _, err := c.write(batch, false); err != nil {
			c.writeFailed(err)
			return
		}
		releaseSegs(owned)
		clear(batch)
		clear(owned)
		if holdFor > 0 {
			t := time.NewTimer(holdFor)
			select {
			case <-t.C:
			case <-c.done:
			}
			t.Stop()
		}
	}
}

// inlineWriteMax bounds how long a goroutine other than the writer (a
// request, the reader writing replies, a sender of a large buffer) writes
// itself: what is left after it goes to the writer goroutine. The reader
// must not sit in a write to a peer that does not read because it is
// itself writing to us; on an ordinary socket the write finishes long
// before.
const inlineWriteMax = 5 * time.Millisecond

// write writes the segments with one writev where the socket has it (TCP,
// Unix), else as one buffer (TLS would make a record per segment). With
// inline, on TCP and Unix sockets, it stops after inlineWriteMax and
// returns what is left unwritten (the first segment cut where the write
// stopped); otherwise it writes everything or fails after WriteTimeout.
func (c *conn) write(segs [][]byte, inline bool) (rest [][]byte, err error) {
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	var n int64
	switch c.nc.(type) {
	case *net.TCPConn, *net.UnixConn:
		limit := c.o.WriteTimeout
		if inline && inlineWriteMax < limit {
			limit = inlineWriteMax
		} else {
			inline = false
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(limit))
		bufs := net.Buffers(segs)
		n, err = bufs.WriteTo(c.nc)
		if err != nil && inline && isTimeout(err) {
			c.stats.bytesOut.Add(uint64(n))
			c.stats.leftToWriter.Add(1)
			return bufs, nil
		}
	default:
		// A TLS write cut by a deadline leaves the connection unusable,
		// so TLS writes always get the full WriteTimeout.
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.o.WriteTimeout))
		b := segs[0]
		if len(segs) > 1 {
			b = make([]byte, 0, total)
			for _, s := range segs {
				b = append(b, s...)
			}
		}
		var k int
		k, err = c.nc.Write(b)
		n = int64(k)
	}
	c.stats.bytesOut.Add(uint64(n))
	if err != nil {
		if isTimeout(err) {
			return nil, newError(CodeSlowConsumer, fmt.Sprintf("peer %s is a slow consumer: a write of %d bytes did not finish within WriteTimeout (%s)", c.remote(), total, c.o.WriteTimeout), err)
		}
		return nil, newError(CodeSocketDestroyed, "write failed", err)
	}
	return nil, nil
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
