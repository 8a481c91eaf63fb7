package sockhop

import (
	"context"
	"log/slog"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Trace receives what crosses a connection at the protocol level: every
// message, the protocol's own (handshake, transition, ping, pong)
// included, as the reference's debug events report them (PROTOCOL.md 11),
// in the manner of net/http/httptrace. Set it in ConnOptions.Trace; either
// function may be nil. They run on the connection's goroutines, sending
// ones on the sender's, and must not block. A nil Trace costs nothing.
type Trace struct {
	// Sending is called once a message is queued for writing, with the
	// mode it will be written in and its encoded size (the whole line or
	// frame). Concurrent senders may report in an order other than the
	// bytes', which the queue keeps in the order it accepted them.
	Sending func(TraceEvent)
	// Received is called for each message decoded from the peer, before
	// it is handled.
	Received func(TraceEvent)
}

// TraceEvent describes one message for a Trace.
type TraceEvent struct {
	// Type is the type name ("" for a JSON line without one).
	Type string
	// Kind is "plain", "request" or "response" (a reply).
	Kind string
	// Protocol marks the protocol's own messages: handshake, transition,
	// ping and pong, which no handler sees.
	Protocol bool
	// Binary: a binary frame; otherwise a JSON line.
	Binary bool
	// Bytes: the data are bytes (a Buffer or a typed buffer).
	Bytes bool
	// Size in bytes: when sending, exactly what is written (the line with
	// its terminator, or the whole frame); when receiving, the line
	// without its terminator or the frame without its 5-byte header (the
	// reference's debug events count the same way).
	Size int
	// CallbackID is the id of a request or response.
	CallbackID string
	// Session is the server's session id (0 on a client).
	Session uint64
}

// LevelTrace is the slog level at which a Logger receives one record per
// message sent and received (the content of a TraceEvent), when no Trace is
// set: a level below Debug, so that ordinary debug logging stays quiet.
// Whether the Logger is enabled at it is checked once per connection.
const LevelTrace = slog.LevelDebug - 4

// traceEvent builds the event of m, sent or received in mode binary;
// protocol marks the protocol's own messages.
func (c *conn) traceEvent(m *wire.Message, binary bool, size int, protocol bool) TraceEvent {
	ev := TraceEvent{Type: m.Type, Kind: m.Kind.String(), Protocol: protocol,
		Binary: binary, Bytes: m.Bytes, Size: size, CallbackID: m.ID}
	if c.sess != nil {
		ev.Session = c.sess.id
	}
	return ev
}

// traceSent reports a message queued in the mode binary with size bytes;
// protocol marks one the engine produced (handshake and its reply,
// transition, ping, pong).
func (c *conn) traceSent(m *wire.Message, binary bool, size int, protocol bool) {
	if t := c.trace; t != nil && t.Sending != nil {
		t.Sending(c.traceEvent(m, binary, size, protocol))
	}
}

// traceReceived reports a decoded message. The reply to our handshake is
// an ordinary "Object" response on the wire (5.2): the protocol's own.
func (c *conn) traceReceived(m *wire.Message) {
	if t := c.trace; t != nil && t.Received != nil {
		protocol := m.Reserved() || (m.Kind == wire.Response && c.isOwnHandshake(m.ID))
		t.Received(c.traceEvent(m, m.Binary, m.Size, protocol))
	}
}

// newTrace returns o.Trace, or a Trace that logs each message at
// LevelTrace when the logger records that level, or nil.
func newTrace(o *ConnOptions, log *slog.Logger) *Trace {
	if o.Trace != nil {
		return o.Trace
	}
	if !log.Enabled(context.Background(), LevelTrace) {
		return nil
	}
	record := func(msg string) func(TraceEvent) {
		return func(ev TraceEvent) {
			attrs := []slog.Attr{slog.String("type", ev.Type), slog.String("kind", ev.Kind),
				slog.Bool("binary", ev.Binary), slog.Int("size", ev.Size)}
			if ev.Bytes {
				attrs = append(attrs, slog.Bool("bytes", true))
			}
			if ev.Protocol {
				attrs = append(attrs, slog.Bool("protocol", true))
			}
			if ev.CallbackID != "" {
				attrs = append(attrs, slog.String("callback_id", ev.CallbackID))
			}
			log.LogAttrs(context.Background(), LevelTrace, msg, attrs...)
		}
	}
	return &Trace{Sending: record("sockhop: sending"), Received: record("sockhop: received")}
}
