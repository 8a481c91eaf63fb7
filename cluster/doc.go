// Package cluster makes many sockhop servers act as one, over NATS.
//
// Each server joins a named cluster through a Node and a *nats.Conn the
// application provides. The cluster then offers what one server offers to
// its own sessions, across all of them:
//
//   - Broadcast: one call reaches every session of every server, encoded
//     and published once, fanned out by each server as Server.SendAll does.
//   - Send, SendTyped, Request: reach one session by its cluster-wide id
//     (Node.ID), wherever it is connected; a Request's reply comes back
//     over NATS request/reply, bounded by the ctx deadline.
//   - Sessions, Lookup, OnJoin, OnLeave: the directory of every server's
//     sessions, with the values the application shares (Node.Share).
//
// Servers announce themselves every HeartbeatInterval (1 s); a server
// that stops announcing, because it died or lost NATS, is dropped from the
// other servers' directories within DeadAfter + HeartbeatInterval (4 s by
// default) of its last heartbeat. A server that leaves with Close is
// dropped at once.
//
// When NATS is unreachable, local sessions keep working (a Broadcast
// still reaches them), cross-server calls fail at once with
// ErrUnavailable, counted in Stats, and the node catches up by itself when
// nats.go has reconnected. Delivery across servers is at most once, as
// NATS core messaging is.
//
// # On NATS
//
// A cluster named NAME uses these subjects (SERVER is a node's id):
//
//	sockhop.NAME.bcast               broadcasts (binary envelope, envelope.go)
//	sockhop.NAME.presence            heartbeats, hello, bye, session join/leave/update (JSON)
//	sockhop.NAME.srv.SERVER.call     Send and Request for a session of SERVER (request/reply)
//	sockhop.NAME.srv.SERVER.cancel   a caller gave up on a call
//	sockhop.NAME.srv.SERVER.snap     pages of SERVER's session list (request/reply)
//
// Message bodies cross as they would go on a Sockhop socket (type name and
// JSON text or bytes, see sockhop.Encoded), checked on arrival as a
// socket's would be.
//
// The package lives in a module of its own so that the sockhop library
// itself depends on nothing.
package cluster
