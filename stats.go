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
	// LateReplies: replies that came after their request's ctx ended
	// (dropped; not protocol errors).
	LateReplies uint64
	// RequestsUnanswered: requests from the peer whose handler returned
	// (or failed, or was missing) without replying: the peer's callback
	// waits forever (a Node peer's, with no timeout).
	RequestsUnanswered uint64

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
	// PingsSent: pings sent by PingInterval or SetPingInterval (not the
	// probes of a binary switch); PongsReceived: those answered.
	PingsSent, PongsReceived uint64
	// UnconfirmedCloses: graceful closes (Close) that the peer did not
	// confirm by closing its side in turn within half a second of our FIN,
	// cleanly: it closed first, reset the connection, never answered, or
	// the flush failed. A Node or Go Sockhop peer closes its side as soon
	// as it has read ours, so after a confirmed close the peer has read
	// every byte we wrote; after an unconfirmed one it may not have. Only a
	// reply to a Request says that the peer also handled a message.
	UnconfirmedCloses uint64
	// HookEventsDropped: error reports (OnError) dropped because more than
	// a thousand hooks were waiting to run.
	HookEventsDropped uint64

	// Connections: connections opened (accepted by a server; dialled by a
	// client, reconnections included).
	Connections uint64
	// Reconnects: connections a client's reconnect loop made.
	Reconnects uint64
	// Unsent: messages accepted for sending (Send, SendTyped, Request,
	// Reply, SendAll returned nil) that their connection never wrote in
	// full before it ended; each connection reports its count through
	// OnError.
	Unsent uint64
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
	s.RequestsUnanswered += o.RequestsUnanswered
	s.LateReplies += o.LateReplies
	s.ProtocolErrors += o.ProtocolErrors
	s.SlowConsumerCuts += o.SlowConsumerCuts
	s.LimitViolations += o.LimitViolations
	s.GuardedTransitions += o.GuardedTransitions
	s.UnprovenTransitions += o.UnprovenTransitions
	s.TransitionProof = max(s.TransitionProof, o.TransitionProof)
	s.PingsSent += o.PingsSent
	s.PongsReceived += o.PongsReceived
	s.HookEventsDropped += o.HookEventsDropped
	s.UnconfirmedCloses += o.UnconfirmedCloses
	s.Connections += o.Connections
	s.Reconnects += o.Reconnects
	s.Unsent += o.Unsent
	s.BufferDropped += o.BufferDropped
	s.MemoryBudgetUsed += o.MemoryBudgetUsed
	s.MemoryBudgetCuts += o.MemoryBudgetCuts
}

// connStats are one connection's live counters.
type connStats struct {
	jsonIn, binIn                 atomic.Uint64
	bytesIn, bytesOut             atomic.Uint64
	timedOut, failedByDisconnect  atomic.Uint64
	unanswered, lateReplies       atomic.Uint64
	protoErrors, slowCuts, limits atomic.Uint64
	guarded, unproven             atomic.Uint64
	unconfirmed                   atomic.Uint64 // graceful closes the peer's FIN did not answer
	proofNanos                    atomic.Int64
	pingsSent, pongsIn            atomic.Uint64
	unsent                        atomic.Uint64
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
		RequestsUnanswered:         st.unanswered.Load(),
		LateReplies:                st.lateReplies.Load(),
		ProtocolErrors:             st.protoErrors.Load(),
		SlowConsumerCuts:           st.slowCuts.Load(),
		LimitViolations:            st.limits.Load(),
		GuardedTransitions:         st.guarded.Load(),
		UnprovenTransitions:        st.unproven.Load(),
		TransitionProof:            time.Duration(st.proofNanos.Load()),
		PingsSent:                  st.pingsSent.Load(),
		PongsReceived:              st.pongsIn.Load(),
		Unsent:                     st.unsent.Load(),
		UnconfirmedCloses:          st.unconfirmed.Load(),
		Connections:                1,
		MemoryBudgetUsed:           c.budgetHeld(),
		MemoryBudgetCuts:           st.budgetCuts.Load(),
	}
}
