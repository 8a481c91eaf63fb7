package cluster

import "sync/atomic"

// Stats counts what a node did. Counters only grow, except Servers and
// Sessions, which are snapshots.
type Stats struct {
	// Broadcasts: Broadcast calls published to the other servers.
	Broadcasts uint64
	// BroadcastsIn: broadcasts of other servers fanned out here.
	BroadcastsIn uint64
	// Routed: Send, SendTyped and Request calls sent to another server.
	Routed uint64
	// Served: calls of other servers run here.
	Served uint64
	// Unavailable: broadcasts and cross-server calls that failed because
	// NATS was unreachable (ErrUnavailable).
	Unavailable uint64
	// UnknownSession: calls to an id no server holds (ErrUnknownSession).
	UnknownSession uint64
	// RemoteErrors: cross-server calls that failed on the other server
	// or got no answer in time.
	RemoteErrors uint64
	// Busy: calls of other servers refused because MaxInflight ran.
	Busy uint64
	// BadMessages: messages from the cluster that could not be decoded.
	BadMessages uint64
	// Resyncs: directory synchronisations with another server (when it
	// is first seen, and after a gap in its events).
	Resyncs uint64
	// ServersDropped: servers dropped for missing heartbeats.
	ServersDropped uint64
	// DirectoryFull: remote sessions not listed because of MaxDirectory.
	DirectoryFull uint64
	// Dropped: messages NATS dropped on the node's subscriptions because
	// the node did not keep up (MaxPendingBytes).
	Dropped uint64
	// HookEventsDropped: OnJoin/OnLeave/OnError events dropped because
	// more than a thousand were waiting.
	HookEventsDropped uint64
	// Servers: servers in the directory now, this one included.
	Servers int
	// Sessions: sessions in the directory now, this server's included.
	Sessions int
}

type counters struct {
	broadcasts, broadcastsIn, routed, served, unavailable, unknown,
	remoteErrors, busy, bad, resyncs, serversDropped, dirFull, hookDropped atomic.Uint64
}
