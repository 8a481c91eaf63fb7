// Package interop holds the interoperability tests of sockhop-go against a
// real Node.js Sockhop 1.8.4 peer. It has no library code: the tests start
// node/peer.js (see node/README.md) as a subprocess, drive it with JSON-line
// commands on its stdin and read its JSON events from its stdout, while the
// Go side is a sockhop.Server or sockhop.Client of the root package.
//
// The scenarios cover both pairings (Go server with Node clients, Go client
// with a Node server) over TCP and Unix sockets: every kind of value in both
// directions, Buffers in the 1.x array form and the 2.x base64 form, remote
// callbacks both ways, several clients at once, the handshake timing out
// against a 1.x peer, and compatibility mode. A Node peer must never crash
// (its "fatal" event) because of anything Go wrote.
//
// The tests need node and npm on PATH. TestMain installs the pinned peer
// (npm ci in node/) when node/node_modules/sockhop is missing and fails the
// run, rather than skipping, when node or npm cannot be found.
package interop
