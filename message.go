package sockhop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Message is a received message, or the reply to a Request. It keeps the
// data as the peer sent it (JSON text or bytes) and decodes only on demand.
// A Message may be kept and used after its handler returns.
type Message struct {
	// Type is the sender's type name ("" when a JSON line carried none).
	Type string

	data    []byte
	isBytes bool
	binary  bool

	c       *conn  // nil for replies
	id      string // set on requests only
	rawID   []byte
	replied atomic.Bool
	frame   []byte // the pooled buffer data aliases, for Release
	charged int    // bytes charged to the server's memory budget (budget.go)
	// json says whether data (JSON) is known to be valid: frames' JSON
	// data is validated where it is used, not twice (conn: SetLazyJSON).
	json atomic.Uint32
}

// States of Message.json.
const (
	jsonValid     = iota // validated when read, or not JSON
	jsonUnchecked        // not validated yet
	jsonInvalid          // not valid JSON: JSON returns nil, Decode fails
)

// smallData is the data size up to which a received message's data is
// stored in the same allocation as the Message (most messages are small:
// one allocation per message instead of two).
const smallData = 64

// messageSmall is a Message with room for small data of its own.
type messageSmall struct {
	m   Message
	buf [smallData]byte
}

func newMessage(c *conn, w *wire.Message) *Message {
	var m *Message
	if !w.Owned && w.Data != nil && len(w.Data) <= smallData {
		ms := new(messageSmall)
		m = &ms.m
		m.data = ms.buf[:copy(ms.buf[:], w.Data)]
	} else {
		m = new(Message)
		if w.Owned {
			m.data, m.frame = w.Data, w.Frame
		} else if w.Data != nil {
			m.data = append(make([]byte, 0, len(w.Data)), w.Data...)
		}
	}
	m.Type, m.isBytes, m.binary, m.c = w.Type, w.Bytes, w.Binary, c
	if w.Unchecked {
		m.json.Store(jsonUnchecked)
	}
	if w.Kind == wire.Request {
		m.id = w.ID
		if w.RawID != nil {
			m.rawID = append([]byte(nil), w.RawID...)
		}
	}
	return m
}

// IsRequest reports whether the sender waits for an answer (Reply).
func (m *Message) IsRequest() bool { return m.id != "" }

// IsBytes reports whether the data is bytes: a raw Buffer or a typed buffer.
func (m *Message) IsBytes() bool { return m.isBytes }

// IsTypedBuffer reports whether m is a typed buffer: bytes whose type is not
// "Buffer" (the Node receive:buffer event).
func (m *Message) IsTypedBuffer() bool { return m.isBytes && m.Type != wire.TypeBuffer }

// Bytes returns the data of a Buffer or typed buffer, or nil for JSON data.
func (m *Message) Bytes() []byte {
	if !m.isBytes {
		return nil
	}
	return m.data
}

// JSON returns the data's JSON text, or nil for bytes. A JSON line without
// a "data" key gives nil too, and so does data the peer sent that is not
// valid JSON (Decode says what is wrong with it).
func (m *Message) JSON() json.RawMessage {
	if m.isBytes || !m.validJSON() {
		return nil
	}
	return m.data
}

// validJSON validates data received unchecked, once, and counts invalid
// data as the peer's protocol error.
func (m *Message) validJSON() bool {
	switch m.json.Load() {
	case jsonValid:
		return true
	case jsonInvalid:
		return false
	}
	if wire.Valid(m.data) {
		m.json.Store(jsonValid)
		return true
	}
	m.invalid()
	return false
}

// invalid marks unchecked data invalid (once) and reports it as the peer's
// undecodable message, as the decoder would have.
func (m *Message) invalid() {
	if m.json.CompareAndSwap(jsonUnchecked, jsonInvalid) && m.c != nil {
		m.c.onUndecodable(&wire.DecodeError{Code: wire.CodeDeserializeFailed,
			Msg: fmt.Sprintf("%s message %s: data is not valid JSON", kindName(m.IsRequest()), quoteName(m.Type))})
	}
}

// errNotJSON is Decode's error for data the peer sent that is not JSON.
func (m *Message) errNotJSON(cause error) error {
	return newError(CodeBadData, fmt.Sprintf("message of type %s: the peer sent data that is not valid JSON", quoteName(m.Type)), cause)
}

func kindName(request bool) string {
	if request {
		return "request"
	}
	return "plain"
}

// Decode decodes JSON data into v, as json.Unmarshal does. Bytes decode into
// a *[]byte only. Decoding into a nil map[string]any or a nil any (what
// Node's JSON.parse gives) takes a fast path without reflection that
// stores the same values, about four times faster.
func (m *Message) Decode(v any) error {
	if m.isBytes {
		if p, ok := v.(*[]byte); ok {
			*p = m.data
			return nil
		}
		return newError(CodeBadData, fmt.Sprintf("message of type %s carries bytes; decode it into a *[]byte, not %T", quoteName(m.Type), v), nil)
	}
	if m.data == nil {
		return newError(CodeBadData, fmt.Sprintf("message of type %s has no data", quoteName(m.Type)), nil)
	}
	if m.json.Load() == jsonInvalid {
		return m.errNotJSON(nil)
	}
	// Dynamic values (what a receiver without a struct asks for) decode
	// without reflection, to what json.Unmarshal would store. Anything
	// else, or anything wire.DecodeAny declines, goes to json.Unmarshal.
	switch p := v.(type) {
	case *map[string]any:
		if *p == nil {
			if x, err := wire.DecodeAny(m.data); err == nil {
				if obj, ok := x.(map[string]any); ok || x == nil {
					m.json.CompareAndSwap(jsonUnchecked, jsonValid)
					*p = obj
					return nil
				}
			}
		}
	case *any:
		if *p == nil {
			if x, err := wire.DecodeAny(m.data); err == nil {
				m.json.CompareAndSwap(jsonUnchecked, jsonValid)
				*p = x
				return nil
			}
		}
	}
	if err := json.Unmarshal(m.data, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) && m.json.Load() == jsonUnchecked {
			m.invalid()
			return m.errNotJSON(err)
		}
		return newError(CodeBadData, fmt.Sprintf("decoding %s message into %T", quoteName(m.Type), v), err)
	}
	m.json.CompareAndSwap(jsonUnchecked, jsonValid)
	return nil
}

// Release tells the library that the message's bytes are no longer used,
// so that the buffer a large binary frame (64 KiB or more) was read into
// can receive a later frame: at hundreds of megabytes a second, that is
// the difference between reusing memory and having the GC collect a
// buffer every few messages. It is optional; without it the buffer is
// collected as usual.
//
// After Release, m's data and every slice obtained from it (Bytes, JSON,
// Decode into a *[]byte) must not be used: they may already hold another
// message. Decode JSON into values that do not alias it (structs, maps,
// strings) before releasing, and copy bytes you keep. Release must not be
// called while another goroutine uses m; calling it again does nothing.
func (m *Message) Release() {
	if m.frame == nil {
		return
	}
	b := m.frame
	m.frame, m.data = nil, nil
	putFrame(b)
}

// String describes the message for logs.
func (m *Message) String() string {
	kind := "JSON"
	if m.isBytes {
		kind = "bytes"
	}
	return fmt.Sprintf("%s message %q (%d %s)", kindName(m.IsRequest()), m.Type, len(m.data), kind)
}

// Reply answers a request with v (typed as Send would type it; []byte
// answers with a Buffer). A request can be answered once.
func (m *Message) Reply(ctx context.Context, v any) error {
	body, err := encodeValue(v)
	if err != nil {
		return err
	}
	return m.reply(ctx, body)
}

// ReplyTyped answers a request with a typed buffer; it needs binary mode,
// like SendTyped.
func (m *Message) ReplyTyped(ctx context.Context, typ string, b []byte) error {
	if err := checkTyped(typ); err != nil {
		return err
	}
	return m.reply(ctx, wire.Message{Type: typ, Data: b, Bytes: true})
}

func (m *Message) reply(ctx context.Context, body wire.Message) error {
	if m.id == "" || m.c == nil {
		return ErrNotRequest
	}
	if !m.replied.CompareAndSwap(false, true) {
		return ErrAlreadyReplied
	}
	body.Kind, body.ID, body.RawID = wire.Response, m.id, m.rawID
	typed := body.Bytes && body.Type != wire.TypeBuffer
	err := m.c.send(ctx, &body, typed, reply)
	if err != nil {
		m.replied.Store(false)
	}
	return err
}

func checkTyped(typ string) error {
	if err := checkTypeName(typ); err != nil {
		return err
	}
	if typ == wire.TypeBuffer {
		return newError(CodeSendTypedBufferInvalidType, `a typed buffer cannot have type "Buffer"; send the []byte with Send for a raw Buffer`, nil)
	}
	if len(typ) > wire.MaxTypeLen {
		return newError(CodeSerializeFailed, fmt.Sprintf("typed buffer type name of %d bytes is longer than the %d a binary frame allows", len(typ), wire.MaxTypeLen), nil)
	}
	return nil
}

// Handler handles a received message. For a request it must call m.Reply
// (or ReplyTyped) before it returns, whatever happened: the peer's
// callback waits for it, forever on a Node peer. A request handler that
// returns, fails or panics without replying is logged as a warning and
// counted in Stats.RequestsUnanswered. An error it returns is logged and
// passed to the OnError hook.
type Handler func(ctx context.Context, m *Message) error

// Session returns the server session the message arrived on, or nil on a
// client.
func (m *Message) Session() *Session {
	if m.c == nil {
		return nil
	}
	return m.c.sess
}
