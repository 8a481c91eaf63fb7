package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// ProtocolVersion is the handshake protocol_version of Sockhop 2.x (5.2).
const ProtocolVersion = 2

// Handshake is the data of a SockhopHandshake request. Field order is the
// reference's key order.
type Handshake struct {
	ProtocolVersion   int    `json:"protocol_version"`
	LibraryVersion    string `json:"library_version"`
	RequestBinaryMode *bool  `json:"request_binary_mode,omitempty"`
}

// HandshakeReply is the data of the answer to a handshake (5.4). A nil
// AllowBinaryMode is written as {}, as the reference does when the request
// carried no request_binary_mode.
type HandshakeReply struct {
	AllowBinaryMode *bool `json:"allow_binary_mode,omitempty"`
}

// PingData is the data of SockhopPing and SockhopPong (7.1). Null fields are
// written as null, never omitted.
type PingData struct {
	ID       *string `json:"_id"`
	Created  *string `json:"_created"`
	Returned *string `json:"_returned"`
	Finished *string `json:"_finished"`
}

// TransitionData is the data of the transition line: {}.
var TransitionData = []byte("{}")

// AppendUUID appends a fresh random UUID version 4 (36 lowercase hex
// characters with dashes), the callback id format of the reference (6.1).
// The bits come from math/rand/v2's runtime source (ChaCha8, seeded by the
// system, per thread): unpredictable enough for ids only the one peer sees
// and that need only be unique among that connection's pending requests,
// and with no system call, which crypto/rand made on every request.
func AppendUUID(dst []byte) []byte {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	for i, b := range u {
		switch i {
		case 4, 6, 8, 10:
			dst = append(dst, '-')
		}
		dst = append(dst, hex[b>>4], hex[b&0xf])
	}
	return dst
}

// NewUUID returns AppendUUID's id as a string.
func NewUUID() string {
	var b [36]byte
	return string(AppendUUID(b[:0]))
}

// ISODate formats t the way JavaScript's Date.toISOString does (3.3):
// milliseconds truncated, and years outside 0000-9999 written with a sign
// and six digits ("+010000-01-01T00:00:00.000Z").
func ISODate(t time.Time) string {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		sign := byte('+')
		if y < 0 {
			sign, y = '-', -y
		}
		b := fmt.Appendf(make([]byte, 0, 27), "%c%06d", sign, y)
		return string(t.AppendFormat(b, "-01-02T15:04:05.000Z"))
	}
	return t.Format("2006-01-02T15:04:05.000Z")
}

// MarshalHandshake returns the data of our handshake request.
func MarshalHandshake(libraryVersion string, requestBinary bool) []byte {
	b, _ := Marshal(Handshake{ProtocolVersion: ProtocolVersion, LibraryVersion: libraryVersion, RequestBinaryMode: &requestBinary})
	return b
}

// MarshalPing returns the data of a new ping with the given id and time.
func MarshalPing(id string, now time.Time) []byte {
	created := ISODate(now)
	b, _ := Marshal(PingData{ID: &id, Created: &created})
	return b
}

// MarshalPong returns the answer to a ping whose data was pingData: _id and
// _created copied when present (null otherwise), _returned our clock (7.1).
func MarshalPong(pingData []byte, now time.Time) []byte {
	var in struct {
		ID      json.RawMessage `json:"_id"`
		Created json.RawMessage `json:"_created"`
	}
	_ = json.Unmarshal(pingData, &in) // anything unparseable answers with nulls
	id, created := nullIfMissing(in.ID), nullIfMissing(in.Created)
	returned := ISODate(now)
	b := make([]byte, 0, 128)
	// The copied values are compacted: a peer's whitespace (a raw newline
	// when its terminator differs from ours) must not reach our line.
	b = append(b, `{"_id":`...)
	b = appendCompact(b, id)
	b = append(b, `,"_created":`...)
	b = appendCompact(b, created)
	b = append(b, `,"_returned":`...)
	b = AppendString(b, returned)
	b = append(b, `,"_finished":null}`...)
	return b
}

// appendCompact appends valid JSON text without any whitespace between
// tokens, as JSON.stringify would write the value back.
func appendCompact(dst, v []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return append(dst, v...)
	}
	return append(dst, buf.Bytes()...)
}

func nullIfMissing(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	return raw
}

// V1Request is the data of a 1.x SockhopRequest (PROTOCOL.md 13), in the
// reference's key order.
type V1Request struct {
	UUID string          `json:"uuid"`
	Data json.RawMessage `json:"data"`
	Type string          `json:"type"`
}

// V1ResponsePacket is the data of a 1.x SockhopResponsePacket.
type V1ResponsePacket struct {
	UUID string          `json:"uuid"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	Last bool            `json:"last"`
}
