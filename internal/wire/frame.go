package wire

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// FrameID returns the binary message id used for m (PROTOCOL.md 4.4).
func FrameID(m *Message) byte {
	id := byte(FrameJSON)
	if m.Bytes {
		id = FrameBuffer
	}
	return id + byte(m.Kind)
}

// CheckFrame reports why m cannot be put in a binary frame, or nil.
func CheckFrame(m *Message) error {
	if m.Kind > Response {
		return &EncodeError{Msg: fmt.Sprintf("message kind %d is not plain, request or response", m.Kind)}
	}
	if len(m.Type) > MaxTypeLen {
		return &EncodeError{Msg: fmt.Sprintf("type name of %d bytes is longer than the %d bytes a binary frame allows", len(m.Type), MaxTypeLen)}
	}
	if m.Kind != Plain {
		if len(m.ID) > CallbackIDLen {
			return &EncodeError{Msg: fmt.Sprintf("callback id of %d bytes is longer than the %d bytes a binary frame allows", len(m.ID), CallbackIDLen)}
		}
		if m.ID == "" {
			return &EncodeError{Msg: "callback id is empty"}
		}
		if strings.IndexByte(m.ID, 0) >= 0 {
			// The receiver reads the id up to the first NUL (4.2): the
			// peer would see another id, or none at all.
			return &EncodeError{Msg: "callback id contains a NUL byte, which a binary frame reads as its end"}
		}
	}
	if !m.Bytes && m.Data == nil {
		return &EncodeError{Msg: "data has no JSON form"}
	}
	if int64(FrameSize(m)-frameHeaderLen) > maxPayload {
		return &EncodeError{Msg: fmt.Sprintf("data of %d bytes does not fit a 4 GiB frame", len(m.Data))}
	}
	return nil
}

// FrameSize returns the total size of m's frame, header included.
func FrameSize(m *Message) int {
	n := frameHeaderLen + 1 + len(m.Type) + 4 + len(m.Data)
	if m.Kind != Plain {
		n += CallbackIDLen
	}
	return n
}

// AppendFrame appends m as one binary frame (4.1-4.3) to dst.
func AppendFrame(dst []byte, m *Message) ([]byte, error) {
	if err := CheckFrame(m); err != nil {
		return dst, err
	}
	n := FrameSize(m)
	dst = grow(dst, n)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n-frameHeaderLen))
	dst = append(dst, FrameID(m), byte(len(m.Type)))
	dst = append(dst, m.Type...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Data)))
	dst = append(dst, m.Data...)
	return AppendFrameTrailer(dst, m), nil
}

// AppendFrameHeader appends the fixed part of a frame whose data of dataLen
// bytes the caller appends next (followed by AppendFrameTrailer). It lets a
// large payload be written from its own buffer without copying it into the
// frame. CheckFrame must have accepted m.
func AppendFrameHeader(dst []byte, m *Message, dataLen int) []byte {
	payload := 1 + len(m.Type) + 4 + dataLen
	if m.Kind != Plain {
		payload += CallbackIDLen
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(payload))
	dst = append(dst, FrameID(m), byte(len(m.Type)))
	dst = append(dst, m.Type...)
	return binary.LittleEndian.AppendUint32(dst, uint32(dataLen))
}

// AppendFrameTrailer appends what follows the data in m's frame: the
// callback id, NUL-padded, of a request or response; nothing otherwise.
func AppendFrameTrailer(dst []byte, m *Message) []byte {
	if m.Kind == Plain {
		return dst
	}
	dst = append(dst, m.ID...)
	for i := len(m.ID); i < CallbackIDLen; i++ {
		dst = append(dst, 0)
	}
	return dst
}

// parsePayload decodes a frame payload laid out per message id (4.3, 4.5).
// Returned slices alias payload. With lazy, the JSON data of an application
// message is not validated (Message.Unchecked): its receiver validates it
// when it decodes it.
func parsePayload(id byte, p []byte, names *nameCache, lazy bool) (Message, error) {
	var m Message
	m.Binary = true
	switch id {
	case FrameJSON, FrameJSONRequest, FrameJSONResponse:
		m.Kind = Kind(id - FrameJSON)
	case FrameBuffer, FrameBufferRequest, FrameBufferResponse:
		m.Kind = Kind(id - FrameBuffer)
		m.Bytes = true
	default:
		return m, &DecodeError{Code: CodeNoSchema, Msg: fmt.Sprintf("no schema for message id %d; frame of %d payload bytes skipped", id, len(p))}
	}
	fail := func(what string) (Message, error) {
		return Message{}, &DecodeError{Code: CodeDeserializeFailed, Msg: fmt.Sprintf("frame id %d (%d payload bytes): %s", id, len(p), what)}
	}
	if len(p) < 1 {
		return fail("empty payload")
	}
	tl := int(p[0])
	if 1+tl+4 > len(p) {
		return fail(fmt.Sprintf("type length %d runs past the payload", tl))
	}
	typ := p[1 : 1+tl]
	if utf8.Valid(typ) {
		m.Type = names.get(typ)
	} else {
		// One U+FFFD per invalid byte, as Node's UTF-8 decoding gives for
		// the usual cases (strings.ToValidUTF8 would merge a run into one).
		m.Type = string([]rune(string(typ)))
	}
	m.HasType = true
	off := 1 + tl
	dl := binary.LittleEndian.Uint32(p[off:])
	off += 4
	if uint64(dl) > uint64(len(p)-off) {
		return fail(fmt.Sprintf("data length %d runs past the payload", dl))
	}
	m.Data = p[off : off+int(dl) : off+int(dl)]
	off += int(dl)
	if !m.Bytes {
		if lazy && !m.Reserved() {
			m.Unchecked = true
		} else if !Valid(m.Data) {
			return fail("data is not valid JSON")
		}
	}
	if m.Kind != Plain {
		// The reference accepts a missing id as empty; a request nobody can
		// answer and a response nobody waits for are useless, so refuse them.
		if len(p)-off < CallbackIDLen {
			return fail(fmt.Sprintf("callback id needs %d bytes, %d left", CallbackIDLen, len(p)-off))
		}
		raw := p[off : off+CallbackIDLen]
		for i, c := range raw {
			if c == 0 {
				raw = raw[:i]
				break
			}
		}
		if len(raw) == 0 {
			return fail("callback id is empty")
		}
		m.ID = string(raw)
	}
	// Bytes after the last field are ignored, as the reference does.
	return m, nil
}

// nameCache interns type names so that a stream of messages of a few types
// costs no allocation per message for the name. It is bounded: past
// maxCachedNames distinct names, new ones are simply allocated.
type nameCache struct{ m map[string]string }

const maxCachedNames = 256

func (c *nameCache) get(b []byte) string {
	if c == nil {
		return string(b)
	}
	if s, ok := c.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if c.m == nil {
		c.m = make(map[string]string)
	}
	if len(c.m) < maxCachedNames {
		c.m[s] = s
	}
	return s
}

// FrameHeaderLen is the size of a frame's header (PROTOCOL.md 4.1): a
// receiver's limit counts the payload after it.
const FrameHeaderLen = frameHeaderLen

// SentSize returns the size a receiver checks against its message limit
// when m is sent in the given mode: the frame's payload in binary mode, the
// line without its terminator in JSON mode (as AppendJSONLine writes it;
// data with raw whitespace, which the line compacts, is counted as given,
// so the result is then an upper bound).
func SentSize(m *Message, binary bool) int {
	if binary {
		return FrameSize(m) - frameHeaderLen
	}
	var tmp [128]byte
	n := len(`{"type":`) + len(AppendString(tmp[:0], m.Type)) + len(`}`)
	if m.Bytes {
		n += len(`,"data":""`) + base64.StdEncoding.EncodedLen(len(m.Data))
	} else if m.Data != nil {
		n += len(`,"data":`) + len(m.Data)
	}
	id := 0
	if m.Kind != Plain {
		if m.RawID != nil {
			id = len(m.RawID)
		} else {
			id = len(AppendString(tmp[:0], m.ID))
		}
	}
	switch m.Kind {
	case Request:
		n += len(`,"id":`) + id
	case Response:
		n += len(`,"callback_id":`) + id
	}
	return n
}
