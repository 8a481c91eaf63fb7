package sockhop

import (
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Proving the switch to binary mode (PROTOCOL.md 5.5, 14.1).
//
// A Node 2.x receiver splits each whole read into JSON lines before it acts
// on any; our transition line switches its parser for later reads only, so
// frames that share a read with the line are lost. No fixed pause can rule
// that out: a busy event loop reads later than any pause. What can be
// proved is that the peer reads frames: every 2.x peer answers a ping at
// any time, so a pong to a binary ping we wrote after the line means the
// peer parsed that ping as a frame, and every later read of it is binary.
//
// So, towards a peer that did not announce itself as this library, the
// queue holds our application frames behind the line (sendQueue's
// barrier). Once the line has been handed to the socket, and probeFirst
// later, a binary probe ping goes out in a write of its own, and again
// after 2, 4, 8, ... ms (at most probeMaxGap apart) while no pong came;
// the pong to any of them releases the frames.
//
// Each probe that shares a read with the line is lost, and a Node peer
// reports it as corrupted data (an 'error' event, fatal to a Node
// application without an 'error' listener, as any corrupted data is), so
// probes are kept rare: the first waits probeFirst, time enough for an idle
// event loop to have read the line on its own (written back to back, the
// two would share its read almost always), and the backoff sends only a
// few while a busy peer reads nothing (five in its first 30 ms). The wait is bounded by TransitionProofTimeout (and,
// on a graceful close, by WriteTimeout): when it runs out the frames are
// released anyway, and that is reported (a warning, and
// Stats.UnprovenTransitions). A coalesced probe is harmless to our data;
// the Node side reports it as corrupted data, which is why the first one
// waits for the line to be written.

const (
	probeFirst    = time.Millisecond
	probeFirstGap = 2 * time.Millisecond
	probeMaxGap   = 100 * time.Millisecond
)

// proofState follows one transition's proof.
type proofState struct {
	prMu       sync.Mutex
	prActive   bool     // frames are held, waiting for a pong
	prStarted  bool     // the first probe went out
	prIDs      []string // the probes sent, any of whose pongs proves the switch
	prGap      time.Duration
	prBegan    time.Time // when the line was written
	prDeadline time.Time
	prNext     time.Time // when prTimer fires next
	prTimer    *time.Timer
}

// armProof starts waiting for the proof of a transition just queued with
// the barrier up; the first probe goes out once the line is written
// (lineWritten).
func (c *conn) armProof() {
	c.prMu.Lock()
	c.prActive = true
	// No deadline until the line is written: it may wait behind a large
	// message the peer reads slowly, and that time is not the peer's
	// delay in answering (WriteTimeout bounds a peer that stops reading).
	c.prDeadline = time.Time{}
	c.prMu.Unlock()
	c.stats.guarded.Add(1)
}

// lineWritten is called by the goroutine that wrote our transition line,
// right after the write: the first probe follows probeFirst later, in a
// write of its own.
func (c *conn) lineWritten() {
	c.prMu.Lock()
	defer c.prMu.Unlock()
	if !c.prActive || c.prStarted {
		return
	}
	c.prStarted = true
	c.prBegan = time.Now()
	if dl := c.prBegan.Add(c.o.TransitionProofTimeout); c.prDeadline.IsZero() || dl.Before(c.prDeadline) {
		c.prDeadline = dl // a graceful close may have set a sooner one
	}
	c.prGap = probeFirstGap
	c.armTickLocked(probeFirst)
}

// armTickLocked makes the next tick come after wait, or at the deadline if
// that is sooner; prMu held.
func (c *conn) armTickLocked(wait time.Duration) {
	wait = min(wait, time.Until(c.prDeadline))
	c.prNext = time.Now().Add(wait)
	if c.prTimer == nil {
		c.prTimer = time.AfterFunc(wait, c.proofTick)
	} else {
		c.prTimer.Reset(wait)
	}
}

// probeLocked records a new probe id and arms the timer for the next one
// (or for the deadline); pmu held.
func (c *conn) probeLocked() string {
	id := wire.NewUUID()
	c.prIDs = append(c.prIDs, id)
	c.armTickLocked(c.prGap)
	c.prGap = min(2*c.prGap, probeMaxGap)
	return id
}

func (c *conn) sendProbe(id string) {
	c.sendControl(&wire.Message{Type: wire.TypePing, Data: wire.MarshalPing(id, timeNow())}, false)
}

// proofTick probes again, or releases the frames when the wait ran out.
func (c *conn) proofTick() {
	c.prMu.Lock()
	if !c.prActive {
		c.prMu.Unlock()
		return
	}
	if !time.Now().Before(c.prDeadline) {
		waited := time.Since(c.prBegan)
		c.prMu.Unlock()
		c.stats.unproven.Add(1)
		c.log.Warn("sockhop: the peer did not answer our binary probe pings after our transition line; "+
			"releasing the first binary frames without proof that it reads them (a Node receiver may lose them)",
			"peer", c.remote(), "waited", waited.String(), "probes", len(c.prIDs))
		c.releaseProof(false)
		return
	}
	id := c.probeLocked()
	c.prMu.Unlock()
	c.sendProbe(id)
}

// isProbePong reports whether a pong answers one of our probes, and if so
// releases the held frames.
func (c *conn) isProbePong(id string) bool {
	c.prMu.Lock()
	found := false
	for _, p := range c.prIDs {
		if p == id {
			found = true
			break
		}
	}
	c.prMu.Unlock()
	if found {
		c.releaseProof(true)
	}
	return found
}

// releaseProof lifts the barrier once; later pongs to probes are ignored.
// proven says a pong came.
func (c *conn) releaseProof(proven bool) {
	c.prMu.Lock()
	was := c.prActive
	c.prActive = false
	if c.prTimer != nil {
		c.prTimer.Stop()
	}
	if was && proven {
		c.stats.proofNanos.Store(int64(time.Since(c.prBegan)))
	}
	c.prMu.Unlock()
	if was {
		c.useToken(c.q.release().token, false)
	}
}

// boundProof makes a graceful close wait for the proof at most for d.
func (c *conn) boundProof(d time.Duration) {
	c.prMu.Lock()
	defer c.prMu.Unlock()
	if !c.prActive {
		return
	}
	if dl := time.Now().Add(d); c.prDeadline.IsZero() || dl.Before(c.prDeadline) {
		c.prDeadline = dl
		if c.prStarted && dl.Before(c.prNext) {
			c.armTickLocked(d)
		}
	}
}

// stopProof ends the wait without releasing: the connection is gone.
func (c *conn) stopProof() {
	c.prMu.Lock()
	c.prActive = false
	if c.prTimer != nil {
		c.prTimer.Stop()
	}
	c.prMu.Unlock()
}
