package sockhop

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// timeNow is the clock for ping and pong stamps.
var timeNow = time.Now

// pingState is the list of the last pings of one connection (PROTOCOL.md 7).
type pingState struct {
	pingMu sync.Mutex
	pings  []pingEntry
}

type pingEntry struct {
	id       string
	answered bool
}

// pingsKept is the reference's list length: four unanswered pings in a row
// mean the peer is dead.
const pingsKept = 4

// pingLoop pings every interval once the connection is initialised. The
// order of write and check follows the reference: a client checks before
// writing the new ping (3 written, cut on the 4th tick), a server writes
// first (4 written, then cut).
func (c *conn) pingLoop(interval time.Duration) {
	defer c.wg.Done()
	select {
	case <-c.hsDoneCh:
	case <-c.done:
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.done:
			return
		}
		id := wire.NewUUID()
		dead := c.addPing(id)
		if dead && !c.server {
			c.closeDead(interval)
			return
		}
		c.sendControl(&wire.Message{Type: wire.TypePing, Data: wire.MarshalPing(id, timeNow())}, false)
		if dead {
			c.closeDeadAfterFlush(interval)
			return
		}
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

// addPing records a new ping and reports whether the list now holds four
// pings none of which was answered.
func (c *conn) addPing(id string) bool {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
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
		if c.pings[i].id == d.ID {
			c.pings[i].answered = true
		}
	}
	c.pingMu.Unlock()
}
