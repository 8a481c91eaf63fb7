package sockhop

import (
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
	// were held until the peer, which may be Node, proved that it reads
	// binary frames (PROTOCOL.md 5.5, 14.1).
	GuardedTransitions uint64
	// UnprovenTransitions: of those, the ones whose frames were released
	// without that proof, because no pong came within
	// TransitionProofTimeout (or a graceful close's WriteTimeout). A Node
	// receiver may have lost their first frames.
	UnprovenTransitions uint64
	// TransitionProof is the longest wait for that proof among the
	// connections counted, from our transition line written to the pong
	// (0 if none was proved).
	TransitionProof time.Duration
	// HookEventsDropped: error reports (OnError) dropped because more than
	// a thousand hooks were waiting to run.
	HookEventsDropped uint64

	// Connections: connections opened (accepted by a server; dialled by a
	// client, reconnections included).
	Connections uint64
	// Reconnects: connections a client's reconnect loop made.
	Reconnects uint64
	// BufferDropped: messages a client held while reconnecting
	// (ReconnectBufferSize) that were never sent: Close came first,
	// reconnecting gave up, or the new connection refused them.
	BufferDropped uint64

	// MemoryBudgetUsed is the bytes a server holds of its MemoryBudget now
	// (a snapshot; for a Session, what that session holds; 0 on a Client),
	// MemoryBudgetLimit the budget (Server.Stats only; 0: no budget).
	MemoryBudgetUsed, MemoryBudgetLimit int64
	// MemoryBudgetCuts: connections cut with ErrMemoryBudget.
	MemoryBudgetCuts uint64
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
	s.UnprovenTransitions += o.UnprovenTransitions
	s.TransitionProof = max(s.TransitionProof, o.TransitionProof)
	s.HookEventsDropped += o.HookEventsDropped
	s.Connections += o.Connections
	s.Reconnects += o.Reconnects
	s.BufferDropped += o.BufferDropped
	s.MemoryBudgetUsed += o.MemoryBudgetUsed
	s.MemoryBudgetCuts += o.MemoryBudgetCuts
}

// connStats are one connection's live counters.
type connStats struct {
	jsonIn, binIn                 atomic.Uint64
	bytesIn, bytesOut             atomic.Uint64
	timedOut, failedByDisconnect  atomic.Uint64
	protoErrors, slowCuts, limits atomic.Uint64
	guarded, unproven             atomic.Uint64
	proofNanos                    atomic.Int64
	leftToWriter                  atomic.Uint64 // inline writes cut by inlineWriteMax (tests)
	budgetCuts                    atomic.Uint64
}

func (c *conn) statsSnapshot() Stats {
	st := &c.stats
	jsonOut, binOut := c.q.counts()
	return Stats{
		JSONMessagesIn:             st.jsonIn.Load(),
		BinaryMessagesIn:           st.binIn.Load(),
		JSONMessagesOut:            jsonOut,
		BinaryMessagesOut:          binOut,
		BytesIn:                    st.bytesIn.Load(),
		BytesOut:                   st.bytesOut.Load(),
		RequestsPending:            c.pendingCount(),
		RequestsTimedOut:           st.timedOut.Load(),
		RequestsFailedByDisconnect: st.failedByDisconnect.Load(),
		ProtocolErrors:             st.protoErrors.Load(),
		SlowConsumerCuts:           st.slowCuts.Load(),
		LimitViolations:            st.limits.Load(),
		GuardedTransitions:         st.guarded.Load(),
		UnprovenTransitions:        st.unproven.Load(),
		TransitionProof:            time.Duration(st.proofNanos.Load()),
		Connections:                1,
		MemoryBudgetUsed:           c.budgetHeld(),
		MemoryBudgetCuts:           st.budgetCuts.Load(),
	}
}
