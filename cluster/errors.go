package cluster

import "errors"

var (
	// ErrUnknownSession: no session of the cluster has this id, or it has
	// left (its server says so, or the server itself is gone).
	ErrUnknownSession = errors.New("cluster: unknown session")
	// ErrUnavailable: NATS cannot be reached now, so other servers
	// cannot be; local sessions still work. The cause is wrapped.
	ErrUnavailable = errors.New("cluster: NATS unavailable")
	// ErrBusy: the server holding the session was serving MaxInflight
	// calls already and refused this one.
	ErrBusy = errors.New("cluster: server busy")
	// ErrClosed: the Node was closed.
	ErrClosed = errors.New("cluster: node closed")
	// ErrNotJoined: the Node has no server yet (call Join).
	ErrNotJoined = errors.New("cluster: node has not joined (call Join)")
)

// Codes of errors that have no sockhop code, in answers between servers.
const (
	codeUnknown  = "CLUSTER_UNKNOWN_SESSION"
	codeBusy     = "CLUSTER_BUSY"
	codeDeadline = "CLUSTER_DEADLINE"
	codeCanceled = "CLUSTER_CANCELED"
	codeOther    = "CLUSTER_ERROR"
)
