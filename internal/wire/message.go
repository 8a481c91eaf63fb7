// Package wire holds the Sockhop codecs: the JSON-line envelope, the six
// binary frame layouts and a stream Decoder that switches from one to the
// other at the exact byte after a transition line.
//
// Nothing here touches a socket, starts a goroutine or reads a clock, so every
// function can be tested with byte slices from shared/vectors and fuzzed.
package wire

// Kind says whether a message is plain, a callback request (it carries the id
// the answer must quote) or a callback response (it quotes that id).
type Kind uint8

// The three kinds of message (PROTOCOL.md 2.1, 6).
const (
	Plain Kind = iota
	Request
	Response
)

func (k Kind) String() string {
	switch k {
	case Plain:
		return "plain"
	case Request:
		return "request"
	case Response:
		return "response"
	}
	return "invalid"
}

// Binary frame message ids (PROTOCOL.md 4.3).
const (
	FrameJSON           = 10
	FrameJSONRequest    = 11
	FrameJSONResponse   = 12
	FrameBuffer         = 13
	FrameBufferRequest  = 14
	FrameBufferResponse = 15
)

// Reserved type names, intercepted before the application sees them (2.3).
const (
	TypeHandshake  = "SockhopHandshake"
	TypeTransition = "SockhopBinaryModeTransition"
	TypePing       = "SockhopPing"
	TypePong       = "SockhopPong"
	// TypeBuffer marks a raw byte buffer; any other type name on a byte
	// message makes it a typed buffer (4.5).
	TypeBuffer = "Buffer"
	// 1.x request/response streams (13).
	TypeV1Request        = "SockhopRequest"
	TypeV1ResponsePacket = "SockhopResponsePacket"
)

// Field limits fixed by the binary layouts (4.2).
const (
	MaxTypeLen     = 255
	CallbackIDLen  = 36
	frameHeaderLen = 5
	maxPayload     = 1<<32 - 1
)

// Message is one Sockhop message in either mode.
//
// For a decoded message, Type, Data, ID and RawID may alias the Decoder's
// buffer and are valid only until the next call to Next, unless Owned is set.
type Message struct {
	Kind Kind
	// Type is the sender's type name. HasType is false when a JSON line
	// carried no string "type" (a top-level non-object, an object without a
	// type): Data then holds the whole line so nothing the peer sent is lost.
	Type    string
	HasType bool
	// Data is JSON text, or raw bytes when Bytes is set. In JSON mode a
	// "Buffer" message whose data is a string arrives base64-decoded with
	// Bytes set (3.4). Data is nil when a JSON line had no "data" key.
	Data  []byte
	Bytes bool
	// ID is the callback id of a request or response: the string itself, or,
	// for a JSON-mode peer that used a non-string id, that value's JSON text.
	ID string
	// RawID is the id's JSON token when it was not a string (JSON mode only),
	// so a response can echo a numeric id as a number (6.2).
	RawID []byte
	// Binary records the mode the message arrived in.
	Binary bool
	// Size is what the message took on the wire, as a receiver's limit
	// counts it: the line without its terminator, or the frame's payload
	// (set by the Decoder).
	Size int
	// Owned is set when Data does not alias the Decoder's buffer.
	Owned bool
	// Unchecked: Data (JSON) was not validated (Decoder.SetLazyJSON); it
	// may be any bytes.
	Unchecked bool
	// Frame is the buffer of its own a large frame was read into, or a
	// large JSON-mode Buffer was decoded into (Data aliases it); nil
	// otherwise.
	Frame []byte
}

// IsTypedBuffer reports whether m is a typed buffer: bytes whose type is not
// exactly "Buffer" (4.5).
func (m *Message) IsTypedBuffer() bool { return m.Bytes && m.Type != TypeBuffer }

// Reserved reports whether m is one of the four 2.x protocol messages that
// never reach an application.
func (m *Message) Reserved() bool {
	if !m.HasType {
		return false
	}
	switch m.Type {
	case TypeHandshake, TypeTransition, TypePing, TypePong:
		return true
	}
	return false
}
