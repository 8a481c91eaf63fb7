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
//     server Sessions) with three roles: a reader that answers handshakes
//     and pings and completes callbacks itself; a dispatcher that runs
//     handlers for plain messages in arrival order (requests run
//     concurrently, bounded by MaxConcurrentRequests, so a handler may
//     itself call Request); and a writer that writes everything queued with
//     one writev. A message that can start at once runs on the reading
//     goroutine, watched, so that a round trip costs no goroutine wake-up
//     (see Concurrency). One close path, run once, ends them all.
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
// this library, the first frames after our transition are held back for
// ConnOptions.TransitionHold (10 ms by default).
//
// # Concurrency
//
// Every method of Client, Server, Session and Message is safe to call from
// many goroutines, except Message.Release, which ends every use of its
// message. Plain messages of one connection are handled one at a time in
// arrival order, requests concurrently. A handler may call Send or Request
// on any connection, including its own, and may block: when nothing waits
// before a message its handler runs on the goroutine that read it, and if
// it then waits for a reply on its own connection, or runs for more than
// a few milliseconds, the reading moves to another goroutine
// (Stats.HandlerHandoffs counts it), so a connection never waits for a
// handler by more than about 5 ms. Hooks (the On* options)
// run on library goroutines and should return quickly.
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
