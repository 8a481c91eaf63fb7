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
// What the tests pin down about 1.8.4 peers:
//
//   - A Buffer sent by 1.8.4 is Node's JSON form on the wire,
//     {"type":"Buffer","data":{"type":"Buffer","data":[1,2,3]}}. Go delivers
//     it as 2.x does: Message.Type "Buffer", IsBytes false, Bytes nil, and
//     JSON() the object {"type":"Buffer","data":[1,2,3]}. The same holds for
//     a Buffer reply to a Request. A []byte Go sends reaches 1.8.4 as the
//     base64 string (1.8.4 never decodes base64).
//   - Our SockhopHandshake reaches the 1.8.4 application as an ordinary
//     request of type "SockhopHandshake". If the application answers it (as
//     peer.js does), Go takes the answer as the handshake reply, without
//     binary mode, and the handshake still times out: OnHandshake(false,
//     ErrHandshakeTimeout), Client.Start fails, traffic stays JSON.
//   - Compatibility mode sends no handshake at all.
//
// The tests need node and npm on PATH. TestMain installs the pinned peer
// (npm ci in node/) when node/node_modules/sockhop is missing and fails the
// run, rather than skipping, when node or npm cannot be found.
package interop
