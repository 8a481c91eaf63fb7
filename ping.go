package sockhop

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// timeNow is the clock for ping and pong stamps.
var timeNow = time.Now

// pingState is the list of the last pings of one connection (PROTOCOL.md
// 7) and the timer that sends them. The interval can change at run time
// (the reference's ping(ms), ping(0)); a timer, not a goroutine, so that a
// connection that does not ping costs nothing and one that starts pinging
// later needs no goroutine started under the close path's feet.
type pingState struct {
	pingMu       sync.Mutex
	pings        []pingEntry
	pingInterval time.Duration // 0: not pinging
	pingTimer    *time.Timer
	pingGen      uint64 // which arming of the timer is current
	pingStopped  bool   // the connection ended: no more ticks
	pingReady    bool   // the handshake ended: ticks may start
	pingTicks    sync.WaitGroup
}

type pingEntry struct {
	id       string
	answered bool
}

// pingsKept is the reference's list length: four unanswered pings in a row
// mean the peer is dead.
const pingsKept = 4

// setPingInterval starts, changes or (0) stops pinging; stopping forgets
// the pings sent so far, as the reference's ping(0) does. The first ping
// goes out one interval later; before the handshake has ended, one
// interval after it ends (7.3: the timer waits for init_complete,
// behaviour.jsonl#client-ping-before-init).
func (c *conn) setPingInterval(d time.Duration) {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.pingStopped {
		return
	}
	if c.pingTimer != nil {
		c.pingTimer.Stop()
		c.pingTimer = nil
	}
	c.pingGen++
	c.pingInterval = d
	if d <= 0 {
		c.pingInterval, c.pings = 0, nil
		return
	}
	if c.pingReady {
		c.armPingsLocked()
	}
}

// armPingsLocked starts the timer for the current interval; pingMu held.
func (c *conn) armPingsLocked() {
	gen := c.pingGen
	c.pingTimer = time.AfterFunc(c.pingInterval, func() { c.pingTick(gen) })
}

// pingsReady lets ticks start: the handshake has ended (finishHandshake).
func (c *conn) pingsReady() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	c.pingReady = true
	if !c.pingStopped && c.pingInterval > 0 && c.pingTimer == nil {
		c.armPingsLocked()
	}
}

// stopPings ends pinging for good and waits for a tick that is running;
// the closer calls it (a tick may be closing the connection itself).
func (c *conn) stopPings() {
	c.pingMu.Lock()
	c.pingStopped = true
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	c.pingMu.Unlock()
	c.pingTicks.Wait()
}

// pingTick is one tick of the timer armed as gen. The order of write and
// check follows the reference: a client checks before writing the new
// ping (3 written, cut on the 4th tick), a server writes first (4
// written, then cut).
func (c *conn) pingTick(gen uint64) {
	c.pingMu.Lock()
	if c.pingStopped || gen != c.pingGen {
		c.pingMu.Unlock()
		return
	}
	interval := c.pingInterval
	id := wire.NewUUID()
	dead := c.addPingLocked(id)
	if !dead {
		c.pingTimer.Reset(interval)
	}
	c.pingTicks.Add(1) // under pingMu while not stopped: stopPings waits for it
	c.pingMu.Unlock()
	defer c.pingTicks.Done()
	if dead && !c.server {
		c.closeDead(interval)
		return
	}
	c.stats.pingsSent.Add(1)
	c.sendControl(&wire.Message{Type: wire.TypePing, Data: wire.MarshalPing(id, timeNow())}, false)
	if dead {
		c.closeDeadAfterFlush(interval)
	}
}

// deadFlushMax bounds how long a server waits for its last ping to be
// written before it cuts a dead peer off.
const deadFlushMax = 100 * time.Millisecond

// closeDeadAfterFlush is the server's cut: the 4th ping, just queued, must
// reach the peer before the FIN, as the reference's does (an abrupt close
// races the writer and usually loses it). A graceful close lets the writer
// flush it; the peer being dead, the flush gets at most deadFlushMax (not
// WriteTimeout) and the wait for the peer's FIN is skipped.
func (c *conn) closeDeadAfterFlush(interval time.Duration) {
	c.close(newError(CodePingTimeout, "peer "+c.remote()+" answered none of the last 4 pings (interval "+interval.String()+"); connection closed as dead", nil), true)
	t := time.NewTimer(min(interval, deadFlushMax))
	select {
	case <-c.q.finished:
	case <-t.C:
	}
	t.Stop()
	_ = c.nc.Close()
}

func (c *conn) closeDead(interval time.Duration) {
	c.close(newError(CodePingTimeout, "peer "+c.remote()+" answered none of the last 4 pings (interval "+interval.String()+"); connection closed as dead", nil), false)
}

// addPingLocked records a new ping and reports whether the list now holds
// four pings none of which was answered; pingMu held.
func (c *conn) addPingLocked(id string) bool {
	c.pings = append(c.pings, pingEntry{id: id})
	if len(c.pings) > pingsKept {
		c.pings = append(c.pings[:0], c.pings[len(c.pings)-pingsKept:]...)
	}
	if len(c.pings) < pingsKept {
		return false
	}
	for _, p := range c.pings {
		if p.answered {
			return false
		}
	}
	return true
}

func (c *conn) onPong(m *wire.Message) {
	if m.Bytes || m.Data == nil {
		return
	}
	var d struct {
		ID string `json:"_id"`
	}
	if json.Unmarshal(m.Data, &d) != nil {
		return
	}
	if c.isProbePong(d.ID) {
		return
	}
	c.pingMu.Lock()
	for i := range c.pings {
		if c.pings[i].id == d.ID && !c.pings[i].answered {
			c.pings[i].answered = true
			c.stats.pongsIn.Add(1)
		}
	}
	c.pingMu.Unlock()
}
