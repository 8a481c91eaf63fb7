// Package sockhop speaks the wire protocol of Sockhop, the Node.js IPC
// library (2.1.0 and the 1.x line), so that Go and Node programs can pass
// objects, raw buffers, typed buffers and remote callbacks to each other over
// TCP, Unix sockets or TLS. Two Go programs get the same, with size limits,
// per-connection callback tables and none of the reference's crashes.
//
// # Layers
//
// The package is built in three layers, bottom up:
//
//   - internal/wire holds the codecs and nothing else: the JSON-line
//     envelope ({"type","data","id","callback_id"} written exactly as Node's
//     JSON.stringify writes it), the six binary frame layouts, and a stream
//     Decoder that starts in JSON mode and switches to binary frames at the
//     exact byte after the peer's transition line. It never touches a socket,
//     checks every length against a limit before buffering, and is fuzzed.
//
//   - A connection engine (unexported, one per socket, shared by Client and
//     server Sessions): a reader that answers handshakes and pings and
//     completes callbacks itself; a dispatcher that runs handlers for plain
//     messages in arrival order (requests run concurrently, bounded by
//     MaxConcurrentRequests, so a handler may itself call Request); and an
//     outbound queue that alone decides what is written and when, written
//     by whoever holds its write token with one writev per batch. One close
//     path, run once, ends them all.
//
//   - Client, Server and Session are the API: dial or listen, handshake
//     policy, broadcast, hooks for the events Node emits.
//
// # Messages and type names
//
// Every message has a type name. Send names Go values the way a Node sender
// names JavaScript values (PROTOCOL.md 2.2): string is "String", numbers are
// "Number", maps and anonymous structs "Object", slices "Array", []byte a raw
// "Buffer", and a named struct its Go type name. A type can choose its name
// with a SockhopType method (Typer), and Named sends any data under any name,
// for talking to Node classes. Received messages keep the raw JSON or bytes;
// Message.Decode decodes on demand.
//
// # Handshake and binary mode
//
// A Sockhop 2.x peer handshakes when a connection opens and, when both sides
// allow it, each direction switches from JSON lines to binary frames; typed
// buffers (SendTyped) need that binary mode. Start connects and waits for
// the handshake; Connect returns as soon as the socket is up, for 1.x peers
// that never handshake. CompatibilityMode behaves like a 1.x peer: no
// handshake and JSON only.
//
// Node receivers lose binary frames that arrive in the same read as the
// transition line (PROTOCOL.md 14.1), so unless the peer announced itself as
// this library, our frames after our transition line wait until the peer
// proved that it reads binary frames: it answers a binary ping sent after
// the line. That costs about a round trip, once per connection, and is
// bounded by ConnOptions.TransitionProofTimeout.
//
// # Concurrency
//
// Every method of Client, Server, Session and Message is safe to call from
// many goroutines, except Message.Release, which ends every use of its
// message. Plain messages of one connection are handled one at a time in
// arrival order, requests concurrently (up to MaxConcurrentRequests). A
// handler may call Send or Request on any connection, including its own,
// and may block.
//
// ConnOptions.InlineHandlers trades that freedom for speed: handlers run on
// the connection's reading goroutine, as in a hand-written read loop, with
// no goroutine hand-off per message. Then a handler must not wait for
// anything that needs its connection to read (a Request on it with the
// handler's ctx fails at once with ErrInlineRequest), and requests run one
// at a time.
//
// Hooks (the On* options) run in order on a goroutine of their own per
// Client or Session, never on the goroutines that read and write, so a
// slow hook delays only later hooks. A hook may call any method, Close
// included: Close never waits for a hook that is running. A handler must
// not call Client.Close, which waits for the running handlers (use
// go c.Close() there).
//
// # Large buffers
//
// A large typed buffer or Buffer is written from the sender's memory when
// the connection is idle, and copied into the queue otherwise; SendTyped
// returns once the caller may reuse its slice. On the receiving side a
// frame of 64 KiB or more is read straight into a buffer of its own that the
// Message owns; Message.Release gives it back for the next frame, which is
// what keeps a receiver at gigabytes per second out of the garbage
// collector.
//
// # Errors
//
// Errors are *Error values whose Code is the reference's ERR_* name where
// one exists; errors.Is matches them against the sentinels (ErrClosed,
// ErrHandshakeTimeout, ErrMessageTooLarge, ...). Nothing a peer sends can
// panic the process: undecodable messages are reported through OnError and
// skipped, and a peer that exceeds a limit loses its connection only.
package sockhop
