package sockhop

import (
	"context"
	"fmt"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Encoded is a message body encoded once, as Send would put it on the
// wire: its type name and its data, JSON text or bytes. It lets a relay
// carry a message between processes without decoding it, and send it
// again later, to one session or to all, exactly as the original value
// would have been sent (the cluster module uses it). An Encoded is
// immutable and safe for concurrent use; its data is shared, not copied.
type Encoded struct {
	m wire.Message
}

// Encode encodes v as Send would (type name from TypeName, JSON data;
// []byte as a Buffer).
func Encode(v any) (*Encoded, error) {
	m, err := encodeValue(v)
	if err != nil {
		return nil, err
	}
	return &Encoded{m: m}, nil
}

// EncodeTyped encodes a typed buffer as SendTyped would; it can be sent
// only to a connection in binary mode.
func EncodeTyped(typ string, b []byte) (*Encoded, error) {
	if err := checkTyped(typ); err != nil {
		return nil, err
	}
	return &Encoded{m: wire.Message{Type: typ, Data: b, Bytes: true}}, nil
}

// NewEncoded rebuilds an Encoded from the parts its Type, Data and IsBytes
// returned, e.g. after they crossed a network. It checks them as Send and
// SendTyped would check a value (reserved type names, valid JSON), since
// they may come from anywhere; data is kept, not copied.
func NewEncoded(typ string, data []byte, isBytes bool) (*Encoded, error) {
	if isBytes {
		if typ == wire.TypeBuffer {
			return &Encoded{m: wire.Message{Type: typ, Data: data, Bytes: true}}, nil
		}
		return EncodeTyped(typ, data)
	}
	if err := checkTypeName(typ); err != nil {
		return nil, err
	}
	if !wire.Valid(data) {
		return nil, newError(CodeBadData, fmt.Sprintf("data of a %q message is not valid JSON (%d bytes)", typ, len(data)), nil)
	}
	return &Encoded{m: wire.Message{Type: typ, Data: data}}, nil
}

// Type returns the type name ("Buffer" for raw bytes).
func (e *Encoded) Type() string { return e.m.Type }

// Data returns the JSON text, or the bytes when IsBytes. It must not be
// modified.
func (e *Encoded) Data() []byte { return e.m.Data }

// IsBytes reports whether Data is bytes (a Buffer or a typed buffer)
// rather than JSON text.
func (e *Encoded) IsBytes() bool { return e.m.Bytes }

// IsTyped reports whether e is a typed buffer, which needs binary mode.
func (e *Encoded) IsTyped() bool { return e.m.Bytes && e.m.Type != wire.TypeBuffer }

// Message returns e as a received Message that belongs to no connection
// (it cannot be replied to): a relay hands a reply that crossed a network
// to its caller as Session.Request would.
func (e *Encoded) Message() *Message {
	m := e.m
	return newMessage(nil, &m)
}

// SendAllEncoded is SendAll for a body encoded already: it is encoded
// once per transmit mode and the same bytes are queued on every session;
// it never waits. A typed buffer cannot be broadcast (sessions in JSON
// mode could not take it), as SendAll cannot broadcast one.
func (s *Server) SendAllEncoded(ctx context.Context, e *Encoded) error {
	if e.IsTyped() {
		return newError(CodeSendTypedBufferNoBinaryMode, fmt.Sprintf("typed buffer %q cannot be broadcast: sessions in JSON mode cannot take it; send it to each session with SendTyped", e.m.Type), nil)
	}
	m := e.m
	return s.sendAll(ctx, &m)
}

// SendEncoded sends e to the session's peer, as Send (or, for a typed
// buffer, SendTyped) would have sent the value it was encoded from.
func (s *Session) SendEncoded(ctx context.Context, e *Encoded) error {
	m := e.m
	return s.c.send(ctx, &m, e.IsTyped(), queued)
}

// RequestEncoded sends e as a callback request and waits for the reply,
// as Request (or RequestTyped) would.
func (s *Session) RequestEncoded(ctx context.Context, e *Encoded) (*Message, error) {
	m := e.m
	return s.c.request(ctx, &m, e.IsTyped())
}
