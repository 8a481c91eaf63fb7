package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"
)

// Marshal returns the JSON text of v as JavaScript's JSON.stringify would
// write it (PROTOCOL.md 3.3): no whitespace, no HTML escaping, U+2028 and
// U+2029 raw, -0 as 0, and a top-level NaN or infinity as null. Go maps are
// written with sorted keys; use a struct or a json.Marshaler where key order
// matters.
func Marshal(v any) ([]byte, error) {
	return AppendMarshal(nil, v)
}

// encState is a pooled encoder: json.Encoder is the only stdlib way to turn
// HTML escaping off, and reusing it keeps Marshal at one allocation.
type encState struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encPool = sync.Pool{New: func() any {
	s := new(encState)
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	return s
}}

// AppendMarshal appends the JSON text of v (see Marshal) to dst.
func AppendMarshal(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case json.RawMessage:
		if !Valid(x) {
			return dst, errors.New("sockhop: json.RawMessage data is not valid JSON")
		}
		if !needsRewrite(x) {
			return append(dst, x...), nil
		}
		// Whitespace (a raw newline would end a JSON line early), U+2028
		// escapes and -0 are rewritten below, as for any other value.
	case string:
		return AppendString(dst, x), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return append(dst, "null"...), nil
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return append(dst, "null"...), nil
		}
	}
	s := encPool.Get().(*encState)
	defer encPool.Put(s)
	s.buf.Reset()
	if err := s.enc.Encode(v); err != nil {
		var uve *json.UnsupportedValueError
		if errors.As(err, &uve) {
			return dst, fmt.Errorf("sockhop: cannot encode %s as JSON (JSON.stringify would write null; use a pointer or a json.Marshaler): %w", uve.Str, err)
		}
		return dst, fmt.Errorf("sockhop: cannot encode %T as JSON: %w", v, err)
	}
	out := s.buf.Bytes()
	out = out[:len(out)-1] // Encoder adds a newline
	dst = appendStringified(dst, out)
	if s.buf.Cap() > 64<<10 {
		// Do not keep a huge buffer alive in the pool.
		s.buf = bytes.Buffer{}
	}
	return dst, nil
}

// needsRewrite reports whether JSON text b contains whitespace, an escaped
// U+2028/U+2029 or a -0, which JSON.stringify would write differently.
func needsRewrite(b []byte) bool {
	for _, c := range b {
		if isJSONSpace(c) {
			return true
		}
	}
	return bytes.Contains(b, []byte(`\u202`)) || bytes.Contains(b, []byte("-0"))
}

// appendStringified appends encoding/json output to dst, rewriting the two
// things it still writes differently from JSON.stringify once HTML escaping
// is off: the escapes \u2028 and \u2029 (JS writes those characters raw) and
// the number -0 (JS writes 0).
func appendStringified(dst, out []byte) []byte {
	if !bytes.Contains(out, []byte(`\u202`)) && !bytes.Contains(out, []byte("-0")) {
		return append(dst, out...)
	}
	inString := false
	start := 0
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inString {
			switch c {
			case '"':
				inString = false
			case '\\':
				if i+5 < len(out) && out[i+1] == 'u' && string(out[i+2:i+5]) == "202" && (out[i+5] == '8' || out[i+5] == '9') {
					dst = append(dst, out[start:i]...)
					dst = utf8.AppendRune(dst, rune(0x2020+int(out[i+5]-'0')))
					start = i + 6
				}
				i++ // skip the escaped character
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '-':
			if i+1 < len(out) && out[i+1] == '0' && (i+2 == len(out) || isDelim(out[i+2])) {
				dst = append(dst, out[start:i]...)
				start = i + 1 // drop the sign
			}
		}
	}
	return append(dst, out[start:]...)
}

func isDelim(c byte) bool { return c == ',' || c == ']' || c == '}' }

// AppendString appends s as a JSON string the way JSON.stringify writes it:
// only '"', '\\' and control characters are escaped (\b \f \n \r \t short,
// the rest \u00xx); everything else is raw UTF-8. Invalid UTF-8 is written as
// U+FFFD, as a Node peer decoding those bytes would see it.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"':
				dst = append(dst, '\\', '"')
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				const hex = "0123456789abcdef"
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendJSONLine appends m as one JSON-mode line: the envelope of PROTOCOL.md
// 3.2 with its keys in the reference's order, then term (nil means "\n", as
// for NewDecoder). Bytes are written as base64 with type "Buffer" semantics
// (3.4); the caller decides whether a typed buffer may be sent at all (it
// may not, in JSON mode).
func AppendJSONLine(dst []byte, m *Message, term []byte) []byte {
	if len(term) == 0 {
		term = newline
	}
	dst = append(dst, `{"type":`...)
	dst = AppendString(dst, m.Type)
	if m.Bytes {
		dst = append(dst, `,"data":"`...)
		n := base64.StdEncoding.EncodedLen(len(m.Data))
		dst = grow(dst, n)
		encodeBase64(dst[len(dst):len(dst)+n], m.Data)
		dst = dst[:len(dst)+n]
		dst = append(dst, '"')
	} else if m.Data != nil {
		dst = append(dst, `,"data":`...)
		dst = appendCompactData(dst, m.Data)
	}
	switch m.Kind {
	case Request:
		dst = append(dst, `,"id":`...)
		dst = appendID(dst, m)
	case Response:
		dst = append(dst, `,"callback_id":`...)
		dst = appendID(dst, m)
	}
	dst = append(dst, '}')
	return append(dst, term...)
}

var newline = []byte{'\n'}

// appendCompactData appends JSON text, dropping whitespace when it contains a
// raw CR, LF or tab: those bytes can only be whitespace in valid JSON, and a
// raw newline would cut the line in two at a "\n" terminator (JSON.stringify
// never writes any). Data that is not valid JSON is the caller's problem and
// is written as is.
func appendCompactData(dst, data []byte) []byte {
	if bytes.IndexByte(data, '\n') < 0 && bytes.IndexByte(data, '\r') < 0 && bytes.IndexByte(data, '\t') < 0 {
		return append(dst, data...)
	}
	var b bytes.Buffer
	if json.Compact(&b, data) != nil {
		return append(dst, data...)
	}
	return append(dst, b.Bytes()...)
}

func appendID(dst []byte, m *Message) []byte {
	if m.RawID != nil {
		// A peer's non-string id is echoed as its JSON text, compacted like
		// data: `[1,<LF>2]` read with a "\0" rx terminator must not cut our
		// "\n" line in two.
		return appendCompactData(dst, m.RawID)
	}
	return AppendString(dst, m.ID)
}

// grow makes room for n more bytes without changing len(dst).
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	return append(dst[:cap(dst)], make([]byte, len(dst)+n-cap(dst))...)[:len(dst)]
}

// parseLine classifies one JSON line as PROTOCOL.md 3.5 describes, without
// the reference's crashes: a line that is valid JSON but not an envelope
// (null, a number, an object without a string type) becomes a message with
// HasType false and the whole line as Data.
//
// Keys are matched exactly, as JavaScript property access does (encoding/json
// would also accept "TYPE" or "Id"), and a repeated key counts with its last
// value, as JSON.parse keeps it. Returned slices alias line.
func parseLine(line []byte, names *nameCache, alloc func(n int) []byte) (Message, error) {
	var m Message
	trimmed := trimJSONSpace(line)
	if bm, ok := parseBufferLine(trimmed, names, alloc); ok {
		return bm, nil // a large Buffer, without scanning its data three times
	}
	if !Valid(trimmed) {
		return m, &DecodeError{Code: CodeBadBufferData, Msg: lineErrMsg(line)}
	}
	if trimmed[0] != '{' {
		m.Data = trimmed
		return m, nil
	}
	var typ, data, rawID, rawCallbackID []byte
	scanObject(trimmed, func(key, val []byte) {
		switch string(unquoteKey(key)) {
		case "type":
			typ = val
		case "data":
			data = val
		case "id":
			rawID = val
		case "callback_id":
			rawCallbackID = val
		}
	})
	if len(typ) == 0 || typ[0] != '"' {
		m.Data = trimmed
		return m, nil
	}
	m.Type = unquoteName(typ, names)
	m.HasType = true
	m.Data = data
	if m.Type == TypeBuffer && len(m.Data) > 0 && m.Data[0] == '"' {
		var s string
		if err := json.Unmarshal(m.Data, &s); err == nil {
			m.Data = decodeBase64Lenient(s)
			m.Bytes = true
			m.Owned = true
		}
	}
	if id, raw, ok := truthyID(rawCallbackID); ok {
		m.Kind, m.ID, m.RawID = Response, id, raw
	} else if id, raw, ok := truthyID(rawID); ok {
		m.Kind, m.ID, m.RawID = Request, id, raw
	}
	return m, nil
}

// isJSONSpace reports whether c is one of the four whitespace bytes JSON
// allows between tokens (bytes.TrimSpace would also strip \v, \f, U+0085
// and U+00A0, which JSON.parse refuses).
func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func trimJSONSpace(b []byte) []byte {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}

// scanObject calls f with the raw key (quotes included) and raw value of
// each member of obj, which must be a valid JSON object without surrounding
// whitespace.
func scanObject(obj []byte, f func(key, val []byte)) {
	i := skipJSONSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		kEnd := i + stringEnd(obj[i:])
		key := obj[i:kEnd]
		i = skipJSONSpace(obj, kEnd) + 1 // the colon
		i = skipJSONSpace(obj, i)
		vEnd := i + valueEnd(obj[i:])
		f(key, obj[i:vEnd:vEnd])
		i = skipJSONSpace(obj, vEnd)
		if i < len(obj) && obj[i] == ',' {
			i = skipJSONSpace(obj, i+1)
		}
	}
}

// stringEnd returns the length of the JSON string at the start of b.
func stringEnd(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the length of the valid JSON value at the start of b.
func valueEnd(b []byte) int {
	switch b[0] {
	case '"':
		return stringEnd(b)
	case '{', '[':
		depth := 0
		for i := 0; i < len(b); i++ {
			switch b[i] {
			case '"':
				i += stringEnd(b[i:]) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	i := 0
	for i < len(b) && !isJSONSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// unquoteKey returns the text of a raw JSON string key. Escapes are rare in
// keys, so the common case returns the bytes between the quotes: the caller
// compares with `switch string(...)`, which does not allocate, where
// returning a string would allocate for every key of every line.
func unquoteKey(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1]
	}
	var s string
	_ = json.Unmarshal(raw, &s) // raw is a valid JSON string
	return []byte(s)
}

// unquoteName decodes a raw JSON string value used as a type name,
// interning plain names.
func unquoteName(raw []byte, names *nameCache) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return names.get(inner)
	}
	var s string
	_ = json.Unmarshal(raw, &s) // invalid UTF-8 becomes U+FFFD per byte
	return s
}

func lineErrMsg(line []byte) string {
	// Sizes and offsets only: the line is the peer's data, and may hold
	// anything (a password) that must not reach a log.
	var v any
	var se *json.SyntaxError
	if err := json.Unmarshal(line, &v); errors.As(err, &se) {
		return fmt.Sprintf("JSON line of %d bytes does not parse (syntax error at byte %d)", len(line), se.Offset)
	}
	return fmt.Sprintf("JSON line of %d bytes does not parse", len(line))
}

// truthyID applies JavaScript truthiness to an id value (3.5): "", 0, false
// and null mean "no id".
func truthyID(raw json.RawMessage) (id string, rawOut []byte, ok bool) {
	if len(raw) == 0 {
		return "", nil, false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil || s == "" {
			return "", nil, false
		}
		return s, nil, true
	case 'n', 'f':
		return "", nil, false
	case 't', '{', '[':
		return string(raw), raw, true
	default:
		// ParseFloat's range error still gives +-Inf (truthy) or 0 (falsy),
		// the values JavaScript reads for 1e400 and 1e-400.
		f, err := strconv.ParseFloat(string(raw), 64)
		if (err != nil && !errors.Is(err, strconv.ErrRange)) || f == 0 {
			return "", nil, false
		}
		return string(raw), raw, true
	}
}

// decodeBase64Lenient decodes base64 the way Node's Buffer.from(s, "base64")
// does: characters outside the alphabet are skipped, the URL-safe alphabet
// is accepted, padding is optional, and it never fails (3.4).
func decodeBase64Lenient(s string) []byte {
	out := make([]byte, 0, len(s)*3/4+3)
	var acc uint32
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case c >= 'A' && c <= 'Z':
			v = c - 'A'
		case c >= 'a' && c <= 'z':
			v = c - 'a' + 26
		case c >= '0' && c <= '9':
			v = c - '0' + 52
		case c == '+' || c == '-':
			v = 62
		case c == '/' || c == '_':
			v = 63
		case c == '=':
			// Node stops at the first padding character.
			i = len(s)
			continue
		default:
			continue
		}
		acc = acc<<6 | uint32(v)
		n++
		if n == 4 {
			out = append(out, byte(acc>>16), byte(acc>>8), byte(acc))
			acc, n = 0, 0
		}
	}
	switch n {
	case 2:
		out = append(out, byte(acc>>4))
	case 3:
		out = append(out, byte(acc>>10), byte(acc>>2))
	}
	return out
}
