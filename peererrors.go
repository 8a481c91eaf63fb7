package sockhop

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Protocol errors of the peer: each one counts toward MaxProtocolErrors
// (an undecodable message, a reply nobody waits for, a null line), and
// their reports are rate limited per connection, so that a peer cannot
// turn a flood of bad messages into a flood of OnError calls and log
// lines. What is not reported one by one is counted (Stats.ProtocolErrors)
// and summed up when reporting resumes and when the connection ends.

// Reports of a peer's protocol errors: a burst of peerErrBurst, then one
// per peerErrEvery.
const (
	peerErrBurst = 10
	peerErrEvery = time.Second
)

// peerErrors is the rate limit of one connection's reports.
type peerErrors struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

// allow reports whether one more report may go out now and how many were
// suppressed since the last one that did.
func (p *peerErrors) allow(now time.Time) (ok bool, suppressed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.IsZero() {
		p.tokens = peerErrBurst
	} else {
		p.tokens = min(peerErrBurst, p.tokens+float64(now.Sub(p.last))/float64(peerErrEvery))
	}
	p.last = now
	if p.tokens < 1 {
		p.suppressed++
		return false, 0
	}
	p.tokens--
	n := p.suppressed
	p.suppressed = 0
	return true, n
}

// takeSuppressed returns and clears the count not yet summed up.
func (p *peerErrors) takeSuppressed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.suppressed
	p.suppressed = 0
	return n
}

// protocolError counts one protocol error of the peer, reports it within
// the rate limit, and closes the connection past MaxProtocolErrors. msg
// must not quote the peer's payload (sizes, offsets and quoteName only).
func (c *conn) protocolError(code, msg string) {
	strikes := c.strikes.Add(1)
	c.stats.protoErrors.Add(1)
	if ok, suppressed := c.peerErrs.allow(time.Now()); ok {
		if suppressed > 0 {
			msg += fmt.Sprintf(" (%d earlier protocol errors from this peer were counted but not reported)", suppressed)
		}
		c.reportError(newError(code, fmt.Sprintf("from %s: %s", c.remote(), msg), nil))
	}
	if c.o.MaxProtocolErrors > 0 && strikes > int64(c.o.MaxProtocolErrors) {
		c.stats.limits.Add(1)
		c.close(newError(CodeProtocol, fmt.Sprintf("peer %s sent %d messages that were protocol errors, more than MaxProtocolErrors (%d)", c.remote(), strikes, c.o.MaxProtocolErrors), nil), false)
	}
}

// onUndecodable counts a message that could not be decoded. The reader
// calls it, and so does a Message whose data, validated where it was
// used, is not JSON.
func (c *conn) onUndecodable(de *wire.DecodeError) { c.protocolError(de.Code, de.Msg) }

// reportSuppressed sums up, once the connection ended, the protocol errors
// that were not reported one by one.
func (c *conn) reportSuppressed() {
	if n := c.peerErrs.takeSuppressed(); n > 0 {
		c.reportError(newError(CodeProtocol, fmt.Sprintf("%d more protocol errors from %s were counted in Stats.ProtocolErrors but not reported one by one", n, c.remote()), nil))
	}
}

// warnNow says whether a warning caused by what the peer sends may be
// logged now: at the same rate as protocol errors, separately counted.
func (c *conn) warnNow() bool {
	ok, _ := c.peerWarns.allow(time.Now())
	return ok
}

// shortName is a name from the peer for a log attribute (slog escapes
// it): cut at 64 bytes.
func shortName(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}

// quoteName quotes a name or id that came from the peer for an error
// text: escaped, and cut at 64 bytes with its length said, since the peer
// chooses its size and content.
func quoteName(s string) string {
	const show = 64
	if len(s) <= show {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:show]), len(s))
}
