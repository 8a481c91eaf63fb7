package sockhop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// The write side. The sendQueue decides what is written and when; this
// file is who writes and how. Whoever holds the queue's write token
// writes, one batch at a time:
//
//   - the writer goroutine, started when bytes are queued and nobody
//     writes, which writes until the queue is empty and then ends (an
//     idle connection has no writer);
//   - a caller that waits anyway (a Request, a reply from a handler
//     worker, a large buffer written from the caller's own memory), when
//     nobody writes: one write, no goroutine woken;
//   - the reader, just before it reads from the socket, for what was left
//     for it (control answers it produced, replies of handlers it ran).
//
// Only the writer goroutine writes for as long as the write takes
// (WriteTimeout). Every other goroutine stops after inlineWriteMax and
// leaves the rest to the writer goroutine, so a reader or a caller never
// waits on a peer that does not read. A TLS write cannot be cut and
// resumed (the tls.Conn is broken after a write deadline), so on TLS only
// the writer goroutine writes.

// sendHow says who writes what a send queued.
type sendHow uint8

const (
	// queued: the writer goroutine, which gathers a burst into one write
	// (fire-and-forget sends).
	queued sendHow = iota
	// writeNow: the caller, if nobody writes, for a caller about to wait
	// anyway (a request alone in flight): one goroutine wake-up less per
	// round trip.
	writeNow
	// reply: a handler's reply: the reader if the handler runs on it
	// (InlineHandlers); otherwise as writeNow when it is the only request
	// handler running, else queued.
	reply
)

// inlineWriteMax bounds how long a goroutine other than the writer writes
// itself; what is left after it goes to the writer goroutine. On an
// ordinary socket the write finishes long before.
const inlineWriteMax = 5 * time.Millisecond

// send queues one message, waiting while the queue is full until ctx ends
// or the connection closes. typed marks a typed buffer, which needs binary
// mode; how says who writes it.
func (c *conn) send(ctx context.Context, m *wire.Message, typed bool, how sendHow) error {
	if err := overSendLimit(m, c.o.MaxSendSize, true); err != nil {
		return err // too large even as a frame, its smallest form (the
		// queue checks the mode it is queued in; a large buffer written
		// from the caller's memory is a frame)
	}
	if how != reply && m.Bytes && len(m.Data) >= largeMsg && c.cuttable && wire.CheckFrame(m) == nil && c.q.takeDirect() {
		return c.writeDirect(m)
	}
	tp := take
	if how == reply {
		tp = replyTake
		if c.cuttable {
			tp = takeUnlessReaderBusy
		}
		if len(c.reqSem) > 1 {
			// Other request handlers run: their replies are coming, and
			// the writer goroutine gathers them into one write (64 in
			// flight: about 40% more round trips a second than a write
			// per reply).
			how = queued
		}
	}
	for {
		p, err := c.q.push(m, typed, appMsg, tp)
		if err != nil {
			return err
		}
		switch p.r {
		case queuedOK:
			if c.trace != nil {
				c.traceSent(m, p.binary, p.size, false)
			}
			c.useToken(p.token, how != queued)
			return nil
		case refused:
			return c.sendClosedErr()
		}
		// noRoom: whatever fills the queue is on its way out (push took
		// the token if nobody wrote).
		c.useToken(p.token, false)
		select {
		case <-p.space:
			c.q.doneWaiting()
		case <-ctx.Done():
			c.q.doneWaiting()
			return fmt.Errorf("%w (%d bytes queued, limit MaxQueueBytes %d): %w", ErrQueueFull, c.q.queued(), c.o.MaxQueueBytes, ctx.Err())
		case <-c.done:
			// The queue was closed before done: the next push says how.
			c.q.doneWaiting()
		}
	}
}

func (c *conn) sendClosedErr() error {
	if c.isDone() {
		return fmt.Errorf("%w: %w", ErrDisconnected, c.closeErr)
	}
	return ErrDisconnected
}

// sendControl queues a message the engine produces by itself (handshake,
// handshake reply, ping, pong, probe). It never waits: a peer that makes
// us queue answers it does not read, past the headroom, is cut off as a
// slow consumer. byReader says the reader queues it; the reader writes it
// before its next socket read, where it may write (not on TLS).
func (c *conn) sendControl(m *wire.Message, byReader bool) {
	tp := take
	if byReader && c.cuttable {
		tp = leave
	}
	p, _ := c.q.push(m, false, ctlMsg, tp) // reserved types always encode
	switch p.r {
	case queuedOK:
		if c.trace != nil {
			c.traceSent(m, p.binary, p.size, true)
		}
		c.useToken(p.token, false)
	case overHeadroom:
		c.close(newError(CodeSlowConsumer, fmt.Sprintf("peer %s does not read what it asks for: outbound queue passed MaxQueueBytes (%d) and the headroom for control messages", c.remote(), c.o.MaxQueueBytes), nil), false)
	}
}

// sendEncoded queues bytes already encoded for each mode (a broadcast). It
// never waits: a session whose queue is full is cut off.
func (c *conn) sendEncoded(enc *encodedPair) error {
	p, err := c.q.pushShared(enc.typ, enc.json, enc.frame, enc.frameErr)
	if err != nil {
		return err
	}
	switch p.r {
	case queuedOK:
		if c.trace != nil {
			c.traceSent(&wire.Message{Type: enc.typ, Bytes: enc.bytes}, p.binary, p.size, false)
		}
		c.useToken(p.token, false)
		return nil
	case refused:
		return c.sendClosedErr()
	}
	err = newError(CodeSlowConsumer, fmt.Sprintf("peer %s is a slow consumer: outbound queue passed MaxQueueBytes (%d)", c.remote(), c.o.MaxQueueBytes), nil)
	c.close(err, false)
	return err
}

// encodedPair is one message encoded once for each transmit mode.
type encodedPair struct {
	typ         string
	bytes       bool
	json, frame []byte
	frameErr    error
}

func encodePair(m *wire.Message, term []byte) *encodedPair {
	p := &encodedPair{typ: m.Type, bytes: m.Bytes, json: wire.AppendJSONLine(nil, m, term)}
	p.frame, p.frameErr = wire.AppendFrame(nil, m)
	return p
}

// useToken acts on a push's outcome: with the token, write now (self, if
// the caller may and the conn allows it) or start the writer goroutine.
func (c *conn) useToken(token, self bool) {
	if !token {
		return
	}
	if self && c.cuttable {
		c.writeOnce()
		return
	}
	c.startWriter()
}

// startWriter starts the writer goroutine, which takes over the token the
// caller holds.
func (c *conn) startWriter() {
	c.wg.Add(1)
	go c.writeLoop()
}

// writeLoop writes batch after batch until the queue has nothing ready,
// then ends (the token is given back in the same critical section).
func (c *conn) writeLoop() {
	defer c.wg.Done()
	var batch, owned [][]byte // reused between rounds
	for {
		// Let the goroutines that are about to queue something (replies
		// being encoded by request workers, a burst of sends) do so before
		// the batch is taken: fewer, fuller writes.
		runtime.Gosched()
		var transition bool
		batch, owned, transition = c.q.take(batch[:0], owned[:0])
		if len(batch) == 0 {
			return
		}
		_, n, err := c.write(batch, false)
		c.q.finishWrite()
		if err != nil {
			c.q.wrotePart(n)
			c.writeFailed(err)
			return
		}
		c.q.wrote()
		releaseSegs(owned)
		clear(batch)
		clear(owned)
		if transition {
			c.lineWritten()
		}
	}
}

// writeOnce writes one batch from the calling goroutine, which holds the
// token, for inlineWriteMax at most; what is left, and anything ready
// after, goes to the writer goroutine.
func (c *conn) writeOnce() {
	var b, o [4][]byte // what a few messages make: no allocation
	batch, owned, transition := c.q.take(b[:0], o[:0])
	if len(batch) == 0 {
		return // the token went back with the empty take
	}
	rest, n, err := c.write(batch, true)
	if err != nil {
		c.q.finishWrite()
		c.q.wrotePart(n)
		c.writeFailed(err)
		return
	}
	if len(rest) == 0 {
		c.q.wrote()
		releaseSegs(owned)
		if transition {
			c.lineWritten()
		}
	} else {
		// Cut: the leftovers, which alias segments of ours, go first; the
		// GC takes those segments afterwards (they are not pooled again).
		c.q.putBack(rest, make([]bool, len(rest)), transition)
	}
	c.q.finishWrite()
	if c.q.giveBack() {
		c.startWriter()
	}
}

// flushForRead writes what was left for the reader (see tokenPolicy
// leave); the reader calls it before every socket read.
func (c *conn) flushForRead() {
	if c.cuttable && c.q.takeToken() {
		c.writeOnce()
	}
}

// writeDirect writes a large binary message from the caller's memory; the
// caller got the token from takeDirect. If the write is cut, the rest is
// copied (the caller may reuse its buffer once we return) and left to the
// writer goroutine.
func (c *conn) writeDirect(m *wire.Message) error {
	if c.trace != nil {
		c.traceSent(m, true, wire.FrameSize(m), false)
	}
	var head [320]byte
	h := wire.AppendFrameHeader(head[:0], m, len(m.Data))
	rest, _, err := c.write([][]byte{h, m.Data, wire.AppendFrameTrailer(nil, m)}, true)
	if err != nil {
		c.q.refuseDirect() // the caller learns it from the error
		c.writeFailed(err)
		return err
	}
	if len(rest) == 0 {
		c.q.wrote()
	} else {
		n := 0
		for _, s := range rest {
			n += len(s)
		}
		b := getFrame(n)[:0]
		for _, s := range rest {
			b = append(b, s...)
		}
		c.q.putBack([][]byte{b}, []bool{true}, false)
	}
	if c.q.giveBack() {
		c.startWriter()
	}
	return nil
}

// releaseSegs makes written segments of ours available again.
func releaseSegs(owned [][]byte) {
	for _, b := range owned {
		releaseSeg(b)
	}
}

// writeFailed ends the write side after a failed write: the connection
// closes, a graceful close learns why its flush failed, and what is queued
// is dropped.
func (c *conn) writeFailed(err error) {
	c.flushErr.CompareAndSwap(nil, &err)
	c.close(err, false)
	c.q.abort()
	c.q.giveBack()
}

// write writes the segments: with one writev where the socket has it, else
// one Write per segment, or, on TLS, as one buffer (TLS would make a record
// per segment). With cut it stops after inlineWriteMax and returns what is
// left unwritten (the first segment cut where the write stopped); otherwise
// it writes everything or fails after WriteTimeout.
func (c *conn) write(segs [][]byte, cut bool) (rest [][]byte, n int64, err error) {
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	if c.cuttable {
		if cut && inlineWriteMax >= c.o.WriteTimeout {
			cut = false
		}
		c.setWriteDeadline(cut)
		bufs := net.Buffers(segs)
		n, err = bufs.WriteTo(c.nc)
		if err != nil && cut && isTimeout(err) {
			c.stats.bytesOut.Add(uint64(n))
			c.stats.leftToWriter.Add(1)
			return bufs, n, nil
		}
	} else {
		c.setWriteDeadline(false)
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
			return nil, n, newError(CodeSlowConsumer, fmt.Sprintf("peer %s is a slow consumer: a write of %d bytes did not finish within WriteTimeout (%s)", c.remote(), total, c.o.WriteTimeout), err)
		}
		return nil, n, newError(CodeSocketDestroyed, "write failed", err)
	}
	return nil, n, nil
}

// setWriteDeadline gives the next write inlineWriteMax (cut) or
// WriteTimeout. A full deadline set less than an eighth of WriteTimeout ago
// is kept (the write gets at least 7/8 of WriteTimeout): with many small
// writes, renewing the deadline each time was a few percent of a busy
// server's CPU. Only the write token's holder calls it.
func (c *conn) setWriteDeadline(cut bool) {
	now := time.Now()
	if cut {
		c.wdl, c.wdlCut = now.Add(inlineWriteMax), true
	} else {
		if !c.wdlCut && c.wdl.Sub(now) >= c.o.WriteTimeout-c.o.WriteTimeout/8 {
			return
		}
		c.wdl, c.wdlCut = now.Add(c.o.WriteTimeout), false
	}
	_ = c.nc.SetWriteDeadline(c.wdl)
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
