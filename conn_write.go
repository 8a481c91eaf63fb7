package sockhop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// writeState is the write side of a conn. Messages are encoded by the
// sending goroutine straight into out, under wmu, in the transmit mode of
// that instant; the writer swaps out for an empty buffer and writes the
// whole batch with one syscall.
type writeState struct {
	wmu      sync.Mutex
	out      []byte
	txBinary bool
	closing  bool
	// Set when our transition line was queued for a peer that may be Node:
	// bytes past holdOff wait until holdUntil (PROTOCOL.md 5.5).
	holdOff   int
	holdUntil time.Time
	waiters   int
	spaceCh   chan struct{} // closed and replaced when the queue drains
	kick      chan struct{}
}

func (w *writeState) init() {
	w.spaceCh = make(chan struct{})
	w.kick = make(chan struct{}, 1)
}

func (c *conn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// send queues one message, waiting while the queue is full. typed marks a
// typed buffer, which needs binary mode.
func (c *conn) send(ctx context.Context, m *wire.Message, typed bool) error {
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
		if len(c.out) == 0 || len(c.out)+encodedSize(m) <= c.o.MaxQueueBytes {
			c.appendLocked(m)
			c.wmu.Unlock()
			c.wake()
			return nil
		}
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
	return len(c.out)
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
	if len(c.out) > 0 && len(c.out)+encodedSize(m) > c.o.MaxQueueBytes {
		c.wmu.Unlock()
		c.close(newError(CodeSlowConsumer, fmt.Sprintf("peer %s does not read what it asks for: outbound queue passed MaxQueueBytes (%d)", c.remote(), c.o.MaxQueueBytes), nil), false)
		return
	}
	c.appendLocked(m)
	c.wmu.Unlock()
	c.wake()
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
	if len(c.out) > 0 && len(c.out)+len(b) > c.o.MaxQueueBytes {
		c.wmu.Unlock()
		err := newError(CodeSlowConsumer, fmt.Sprintf("peer %s is a slow consumer: outbound queue passed MaxQueueBytes (%d)", c.remote(), c.o.MaxQueueBytes), nil)
		c.close(err, false)
		return err
	}
	c.out = append(c.out, b...)
	c.countOut()
	c.wmu.Unlock()
	c.wake()
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
	if c.txBinary {
		c.out, _ = wire.AppendFrame(c.out, m) // checked by the caller
	} else {
		c.out = wire.AppendJSONLine(c.out, m, c.txTerm)
	}
	c.countOut()
}

// switchToBinary queues our transition line and flips the transmit mode in
// the same critical section, so no JSON can follow the line (5.5).
func (c *conn) switchToBinary(peerMaybeNode bool) bool {
	c.wmu.Lock()
	if c.closing || c.txBinary {
		c.wmu.Unlock()
		return false
	}
	c.out = wire.AppendJSONLine(c.out, &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}, c.txTerm)
	c.countOut()
	c.txBinary = true
	if peerMaybeNode && c.o.TransitionHold > 0 {
		c.stats.guarded.Add(1)
		c.holdOff = len(c.out)
		c.holdUntil = time.Now().Add(c.o.TransitionHold)
	}
	c.wmu.Unlock()
	c.wake()
	return true
}

// writeLoop drains the queue: one write per wake-up with everything queued.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	defer close(c.writeDone)
	var spare []byte
	for {
		select {
		case <-c.kick:
		case <-c.done:
		}
		c.wmu.Lock()
		batch := c.out
		var holdFor time.Duration
		if c.holdOff > 0 {
			// Write up to and including the transition line now; the frames
			// after it wait until the hold ends.
			head := append(spare[:0], batch[:c.holdOff]...)
			n := copy(batch, batch[c.holdOff:])
			c.out = batch[:n]
			batch = head
			spare = nil
			holdFor = time.Until(c.holdUntil)
			c.holdOff = 0
		} else {
			c.out = spare[:0]
		}
		if c.waiters > 0 {
			close(c.spaceCh)
			c.spaceCh = make(chan struct{})
		}
		closing := c.closing
		c.wmu.Unlock()

		if len(batch) > 0 {
			if err := c.write(batch); err != nil {
				c.flushErr = err // read after writeDone is closed
				c.close(err, false)
				return
			}
		}
		if holdFor > 0 {
			t := time.NewTimer(holdFor)
			select {
			case <-t.C:
			case <-c.done:
			}
			t.Stop()
			c.wake()
		}
		if cap(batch) <= 1<<20 {
			spare = batch[:0] // reuse; a huge batch buffer is left to the GC
		} else {
			spare = nil
		}
		if closing {
			c.wmu.Lock()
			empty := len(c.out) == 0
			c.wmu.Unlock()
			if empty {
				return
			}
			c.wake()
		}
	}
}

func (c *conn) write(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.o.WriteTimeout))
	n, err := c.nc.Write(b)
	c.stats.bytesOut.Add(uint64(n))
	if err != nil {
		if isTimeout(err) {
			return newError(CodeSlowConsumer, fmt.Sprintf("peer %s is a slow consumer: a write of %d bytes did not finish within WriteTimeout (%s)", c.remote(), len(b), c.o.WriteTimeout), err)
		}
		return newError(CodeSocketDestroyed, "write failed", err)
	}
	return nil
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "unix"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
