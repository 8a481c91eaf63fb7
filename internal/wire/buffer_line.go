package wire

import (
	"bytes"
)

// bufferLinePrefix starts a Buffer line as 2.x and this library write one
// in JSON mode (JSON.stringify's key order, 3.4).
const bufferLinePrefix = `{"type":"Buffer","data":"`

// bufferLineMin is the data length from which parseBufferLine is worth its
// extra small parse.
const bufferLineMin = 1 << 10

// parseBufferLine is parseLine's shortcut for a large Buffer line,
// {"type":"Buffer","data":"<base64>"...}. parseLine would scan the data
// three times with encoding/json's byte-at-a-time scanner (json.Valid, the
// key scan, json.Unmarshal into a string) before decoding the base64: about
// 20 ms per MiB. Here the data's closing quote is found with IndexByte and
// decodeBase64 checks every character while it decodes: canonical base64
// needs no JSON unescaping and cannot hide a quote. The rest of the
// line goes through parseLine with the data emptied, so the result is the
// one parseLine gives. ok is false for any other line (URL-safe or
// unpadded base64 included), which parseLine then handles in full.
func parseBufferLine(line []byte, names *nameCache, alloc func(n int) []byte) (m Message, ok bool) {
	if len(line) < len(bufferLinePrefix)+bufferLineMin || !bytes.HasPrefix(line, []byte(bufferLinePrefix)) {
		return m, false
	}
	rest := line[len(bufferLinePrefix):]
	end := bytes.IndexByte(rest, '"')
	if end < bufferLineMin {
		return m, false
	}
	data, rest := rest[:end], rest[end:] // rest starts at the closing quote
	// A later "type" or "data" key would win over these (as JSON.parse
	// keeps the last), and an escape could spell one.
	if bytes.IndexByte(rest, '\\') >= 0 || bytes.Contains(rest, []byte("data")) || bytes.Contains(rest, []byte("type")) {
		return m, false
	}
	short := make([]byte, 0, len(bufferLinePrefix)+len(rest))
	short = append(append(short, bufferLinePrefix...), rest...)
	m, err := parseLine(short, names, nil) // short's data is empty: no shortcut again
	if err != nil || m.Type != TypeBuffer || !m.Bytes || len(m.Data) != 0 {
		return Message{}, false
	}
	// decodeBase64 takes canonical base64 only (no CR, LF or anything
	// JSON would have to unescape), which it decodes to the bytes
	// decodeBase64Lenient gives.
	var out []byte
	if alloc != nil {
		out = alloc(len(data) / 4 * 3) // given back by the receiver's Release
	} else {
		out = make([]byte, len(data)/4*3)
	}
	n, ok := decodeBase64(out, data)
	if !ok {
		return Message{}, false
	}
	m.Data, m.Frame = out[:n], out
	return m, true
}
