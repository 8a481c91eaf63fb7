package sockhop

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Stats counts what crossed one connection (Session.Stats), or every
// connection a Client or Server has had, the ended ones included.
// Counters only grow, except RequestsPending, which is a snapshot.
type Stats struct {
	// Messages decoded from the peer and queued for it, protocol messages
	// (handshake, transition, ping, pong) included, by mode.
	JSONMessagesIn, BinaryMessagesIn   uint64
	JSONMessagesOut, BinaryMessagesOut uint64
	// Bytes read from and written to the sockets.
	BytesIn, BytesOut uint64

	// RequestsPending is how many of our requests wait for a reply now.
	RequestsPending int
	// RequestsTimedOut: requests whose ctx ended before the reply came.
	RequestsTimedOut uint64
	// RequestsFailedByDisconnect: requests failed because the connection
	// ended while they waited.
	RequestsFailedByDisconnect uint64

	// ProtocolErrors: messages from the peer that were skipped (undecodable,
	// or a reply nobody waited for).
	ProtocolErrors uint64
	// SlowConsumerCuts: connections closed because the peer did not read
	// what was queued for it (queue over MaxQueueBytes on a broadcast or a
	// control reply, or a write longer than WriteTimeout).
	SlowConsumerCuts uint64
	// LimitViolations: a message over MaxMessageSize or MaxPreHandshakeSize,
	// more than MaxProtocolErrors, MaxPendingRequests or MaxConnections.
	LimitViolations uint64
	// GuardedTransitions: our switches to binary mode whose first frames
	// were held back for a peer that may be Node (PROTOCOL.md 14.1).
	GuardedTransitions uint64
	// HandlerHandoffs: handlers that started on the connection's reading
	// goroutine and then blocked (waited for a reply on their own
	// connection, or ran past a few milliseconds), so the reading moved
	// to another goroutine. Harmless; a count close to the number of
	// messages means most handlers block, and each costs a goroutine
	// wake-up the fast path avoids.
	HandlerHandoffs uint64

	// Connections: connections opened (accepted by a server; dialled by a
	// client, reconnections included).
	Connections uint64
	// Reconnects: connections a client's reconnect loop made.
	Reconnects uint64
	// BufferDropped: messages a client held while reconnecting
	// (ReconnectBufferSize) that were never sent: Close came first,
	// reconnecting gave up, or the new connection refused them.
	BufferDropped uint64
}

// add adds o's counters to s (RequestsPending too).
func (s *Stats) add(o Stats) {
	s.JSONMessagesIn += o.JSONMessagesIn
	s.BinaryMessagesIn += o.BinaryMessagesIn
	s.JSONMessagesOut += o.JSONMessagesOut
	s.BinaryMessagesOut += o.BinaryMessagesOut
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.RequestsPending += o.RequestsPending
	s.RequestsTimedOut += o.RequestsTimedOut
	s.RequestsFailedByDisconnect += o.RequestsFailedByDisconnect
	s.ProtocolErrors += o.ProtocolErrors
	s.SlowConsumerCuts += o.SlowConsumerCuts
	s.LimitViolations += o.LimitViolations
	s.GuardedTransitions += o.GuardedTransitions
	s.HandlerHandoffs += o.HandlerHandoffs
	s.Connections += o.Connections
	s.Reconnects += o.Reconnects
	s.BufferDropped += o.BufferDropped
}

// connStats are one connection's live counters.
type connStats struct {
	jsonIn, binIn, jsonOut, binOut atomic.Uint64
	bytesIn, bytesOut              atomic.Uint64
	timedOut, failedByDisconnect   atomic.Uint64
	protoErrors, slowCuts, limits  atomic.Uint64
	guarded, promoted              atomic.Uint64
	leftToWriter                   atomic.Uint64 // inline writes cut by inlineWriteMax (tests)
}

func (c *conn) statsSnapshot() Stats {
	st := &c.stats
	return Stats{
		JSONMessagesIn:             st.jsonIn.Load(),
		BinaryMessagesIn:           st.binIn.Load(),
		JSONMessagesOut:            st.jsonOut.Load(),
		BinaryMessagesOut:          st.binOut.Load(),
		BytesIn:                    st.bytesIn.Load(),
		BytesOut:                   st.bytesOut.Load(),
		RequestsPending:            c.pendingCount(),
		RequestsTimedOut:           st.timedOut.Load(),
		RequestsFailedByDisconnect: st.failedByDisconnect.Load(),
		ProtocolErrors:             st.protoErrors.Load(),
		SlowConsumerCuts:           st.slowCuts.Load(),
		LimitViolations:            st.limits.Load(),
		GuardedTransitions:         st.guarded.Load(),
		HandlerHandoffs:            st.promoted.Load(),
		Connections:                1,
	}
}

// countOut counts one queued message in the current transmit mode; the
// caller holds wmu.
func (c *conn) countOut() {
	if c.txBinary {
		c.stats.binOut.Add(1)
	} else {
		c.stats.jsonOut.Add(1)
	}
}

// socketReader is what the decoder reads from: the socket, with the
// bytes counted, replies left for the reader written first (they answer
// what was read before), and, with an idle timeout, a deadline on each
// read.
type socketReader struct{ c *conn }

func (sr socketReader) Read(p []byte) (int, error) {
	c := sr.c
	c.flushDeferred()
	idle := c.o.IdleTimeout
	if idle > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(idle))
	}
	n, err := c.nc.Read(p)
	c.stats.bytesIn.Add(uint64(n))
	if err != nil && idle > 0 && isTimeout(err) {
		err = newError(CodeIdle, fmt.Sprintf("peer sent nothing for %s (IdleTimeout); connection closed", idle), err)
	}
	return n, err
}
