package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for every codec in the package (RELIABILITY.md R5): the two
// stream decoders must survive any input without panicking, within a fixed
// buffer bound, and read it the same way however it is cut into reads; the
// encoders must round-trip every value they accept. Each target's seed
// corpus comes from shared/vectors (plus testdata/fuzz/<Target>/ for
// crashers found so far), so `go test` runs the seeds every time.

// fuzzLimit is the message limit in the decoder targets: small, so that
// inputs the fuzzer can build reach it.
const fuzzLimit = 4096

// fuzzTerms are the terminators the vectors use; a decoder target picks one
// with the low bits of its seed.
var fuzzTerms = [...]string{"\n", "\r\n", "\x00", "<END>"}

func termIndex(t testing.TB, term string) uint64 {
	t.Helper()
	for i, s := range fuzzTerms {
		if s == term {
			return uint64(i)
		}
	}
	t.Fatalf("terminator %q not in fuzzTerms", term)
	return 0
}

// boundReader checks, each time the Decoder reads, that it holds no more
// than the limit, the terminator and one 64 KiB read (R5: no buffer larger
// than a fixed cap, whatever the input).
type boundReader struct {
	t   testing.TB
	r   *chunkReader
	d   *Decoder
	max int
}

func (b *boundReader) Read(p []byte) (int, error) {
	if b.d.Buffered() > b.max || cap(b.d.buf) > b.max {
		b.t.Fatalf("decoder holds %d bytes in a buffer of %d, bound %d", b.d.Buffered(), cap(b.d.buf), b.max)
	}
	return b.r.Read(p)
}

// fuzzDecode decodes chunks like decodeChunks, checking the buffer bound.
func fuzzDecode(t testing.TB, chunks [][]byte, term []byte, binary bool) decodeResult {
	t.Helper()
	br := &boundReader{t: t, r: &chunkReader{chunks: chunks}, max: fuzzLimit + len(term) + readMax}
	d := NewDecoder(br, term, fuzzLimit)
	br.d = d
	if binary {
		d.SwitchToBinary()
	}
	outs, err := decodeAll(t, d)
	if d.Buffered() > br.max {
		t.Fatalf("decoder holds %d bytes at the end", d.Buffered())
	}
	return decodeResult{Outs: outs, Err: errText(err)}
}

// checkSplits decodes data whole, then in a chunking and a two-read cut
// drawn from seed, and requires the same reading each time.
func checkSplits(t *testing.T, data []byte, seed uint64, binary bool) decodeResult {
	term := []byte(fuzzTerms[seed%uint64(len(fuzzTerms))])
	ref := fuzzDecode(t, [][]byte{data}, term, binary)
	rng := rand.New(rand.NewPCG(seed, uint64(len(data))))
	cuts := randomCuts(rng, len(data))
	if got := fuzzDecode(t, splitAt(data, cuts...), term, binary); !equalResults(got, ref) {
		t.Fatalf("cuts %v: got\n%s\nwant\n%s", cuts, got, ref)
	}
	if len(data) > 0 {
		at := int(seed>>8) % len(data)
		if got := fuzzDecode(t, splitAt(data, at), term, binary); !equalResults(got, ref) {
			t.Fatalf("cut at %d: got\n%s\nwant\n%s", at, got, ref)
		}
	}
	return ref
}

// addStreamSeeds adds the vectors' byte streams: JSON lines with their
// terminator, binary frames and decoder probes after a transition line (or
// alone, in binary mode), and every transcript stream.
func addStreamSeeds(f *testing.F, binary bool) {
	transition := []byte(`{"type":"SockhopBinaryModeTransition","data":{}}` + "\n")
	for _, r := range readJSONL[binRow](f, "binary-frames.jsonl") {
		var b []byte
		switch r.Kind {
		case "encode":
			b = unhex(f, r.Hex)
		case "decode":
			for _, c := range r.ChunksHex {
				b = append(b, unhex(f, c)...)
			}
		default:
			continue
		}
		if !binary {
			b = append(append([]byte(nil), transition...), b...)
		}
		f.Add(b, uint64(len(b)))
	}
	for _, r := range readJSONL[lineRow](f, "json-lines.jsonl") {
		if r.LineHex == "" {
			continue
		}
		seed := termIndex(f, string(unhex(f, r.TerminatorHex))) | uint64(len(r.LineHex))<<8
		f.Add(unhex(f, r.LineHex), seed)
	}
	for _, c := range transcriptCases(f) {
		b := c.bytes
		if binary {
			// The binary part, after the transition line; streams that
			// stay in JSON mode are garbage to a binary decoder, which is
			// a fine seed too.
			for _, m := range c.stream.Messages {
				if m.Mode == "binary" {
					b = b[m.Offset:]
					break
				}
			}
		}
		f.Add(b, termIndex(f, string(c.term))|uint64(len(b))<<8)
	}
}

// FuzzDecoderJSON feeds arbitrary bytes to a Decoder starting in JSON mode
// (so a transition line in the input switches it to frames).
func FuzzDecoderJSON(f *testing.F) {
	addStreamSeeds(f, false)
	f.Add([]byte("\n\n{}\n"), uint64(0))
	f.Add([]byte("{\"type\":\"a\"}\r\r\n\r\n"), uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		checkSplits(t, data, seed, false)
	})
}

// FuzzDecoderBinary does the same in binary mode, and also checks that each
// decoded frame, encoded again, decodes to the same message.
func FuzzDecoderBinary(f *testing.F) {
	addStreamSeeds(f, true)
	f.Add(frameHeader(0xFFFFFFFF, FrameJSON), uint64(0))
	f.Add(append(frameHeader(fuzzLimit, FrameBuffer), make([]byte, fuzzLimit)...), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		ref := checkSplits(t, data, seed, true)
		for _, o := range ref.Outs {
			if o.Err != "" {
				continue
			}
			m := Message{Kind: o.Kind, Type: o.Type, Data: []byte(o.Data), Bytes: o.Bytes, ID: o.ID}
			if CheckFrame(&m) != nil {
				// A type with invalid UTF-8 comes back with U+FFFD for
				// each bad byte and may then be over 255 bytes.
				continue
			}
			frame, err := AppendFrame(nil, &m)
			noErr(t, err)
			// Default limit: U+FFFD for bad bytes can make the type longer.
			again := decodeChunks(t, [][]byte{frame}, decodeOpts{binary: true})
			sameResult(t, "decode(encode(decoded frame))", again, decodeResult{Outs: []outcome{o}})
		}
	})
}

// compactJSON returns valid JSON text without insignificant whitespace, the
// form in which two texts of the same value compare equal here (numbers
// and strings are kept as written, as the package keeps them).
func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("%q is not JSON: %v", b, err)
	}
	return out.String()
}

// FuzzParseLine classifies arbitrary lines; whatever becomes an envelope
// must survive AppendJSONLine and a second parse unchanged.
func FuzzParseLine(f *testing.F) {
	for _, r := range readJSONL[lineRow](f, "json-lines.jsonl") {
		if r.LineHex != "" {
			f.Add([]byte(r.LineText))
		}
	}
	for _, c := range transcriptCases(f) {
		for _, m := range c.stream.Messages {
			if m.Text != nil {
				f.Add([]byte(*m.Text))
			}
		}
	}
	for _, s := range []string{"", "null", " 5 ", `{"type":"Buffer","data":"Y-_"}`, `{"type":"A","id":[1,` + "\n" + `2]}`,
		`{"type":"\ud800","data":{"a":"\u2028"},"callback_id":1e400}`, `{"type":"A","type":"B","id":0,"id":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var names nameCache
		m, err := parseLine(line, &names, nil)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Code != CodeBadBufferData {
				t.Fatalf("error %v, want a BAD_BUFFER_DATA DecodeError", err)
			}
			if json.Valid(line) {
				t.Fatalf("valid JSON %q refused", line)
			}
			return
		}
		if !json.Valid(line) {
			t.Fatalf("invalid JSON %q accepted", line)
		}
		if !m.HasType {
			if string(m.Data) != string(trimJSONSpace(line)) || m.Kind != Plain || m.Bytes {
				t.Fatalf("non-envelope line %q read as %+v", line, m)
			}
			return
		}
		// Strings are decoded (bad bytes become U+FFFD); a non-string id
		// is kept as the peer's JSON text, which may hold any bytes.
		if !utf8.ValidString(m.Type) || (m.RawID == nil && !utf8.ValidString(m.ID)) {
			t.Fatalf("type %q or id %q is not valid UTF-8", m.Type, m.ID)
		}
		if (m.Kind == Plain) != (m.ID == "") || (m.RawID != nil && string(m.RawID) != m.ID) {
			t.Fatalf("kind %v with id %q raw %q", m.Kind, m.ID, m.RawID)
		}
		if m.Data != nil && !m.Bytes && !json.Valid(m.Data) {
			t.Fatalf("data %q is not JSON", m.Data)
		}

		out := AppendJSONLine(nil, &m, []byte("\n"))
		if bytes.IndexByte(out, '\n') != len(out)-1 {
			t.Fatalf("encoded line %q has a newline before its terminator", out)
		}
		m2, err := parseLine(out[:len(out)-1], &names, nil)
		if err != nil {
			t.Fatalf("re-encoded line %q does not parse: %v", out, err)
		}
		equal(t, "type", m2.Type, m.Type)
		equal(t, "hasType", m2.HasType, true)
		equal(t, "kind", m2.Kind, m.Kind)
		equal(t, "bytes", m2.Bytes, m.Bytes)
		switch {
		case m.Bytes:
			equalBytes(t, "buffer data", m2.Data, m.Data)
		case m.Data == nil:
			if m2.Data != nil {
				t.Errorf("data %q appeared", m2.Data)
			}
		default:
			equal(t, "data", compactJSON(t, m2.Data), compactJSON(t, m.Data))
		}
		if m.RawID != nil {
			equal(t, "raw id", compactJSON(t, m2.RawID), compactJSON(t, m.RawID))
		} else {
			equal(t, "id", m2.ID, m.ID)
			if m2.RawID != nil {
				t.Errorf("raw id %q appeared", m2.RawID)
			}
		}
	})
}

// perByteValid replaces each byte of s that is not part of valid UTF-8 with
// U+FFFD, as a Node peer decoding the bytes sees them.
func perByteValid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // utf8.RuneError (U+FFFD) for a bad byte, n == 1
		i += n
	}
	return b.String()
}

// frameSeeds returns the binary-frames.jsonl encode rows as frame fuzz
// arguments.
func frameSeeds(f *testing.F) (out []struct {
	typ   string
	data  []byte
	kind  uint8
	id    string
	bytes bool
}) {
	for _, r := range readJSONL[binRow](f, "binary-frames.jsonl") {
		if r.Kind != "encode" {
			continue
		}
		s := struct {
			typ   string
			data  []byte
			kind  uint8
			id    string
			bytes bool
		}{typ: r.Fields.Type, kind: uint8((r.MsgID - FrameJSON) % 3), id: r.Fields.CallbackID, bytes: r.MsgID >= FrameBuffer}
		if r.Fields.DataHex != nil {
			s.data = unhex(f, *r.Fields.DataHex)
		} else {
			s.data = []byte(*r.Fields.DataJSON)
		}
		out = append(out, s)
	}
	return out
}

// FuzzFrameRoundTrip encodes a message from arbitrary fields; whatever
// CheckFrame accepts must decode to the same fields.
func FuzzFrameRoundTrip(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s.typ, s.data, s.kind, s.id, s.bytes)
	}
	f.Add("\xff\xfe", []byte("null"), uint8(1), "short", false)
	f.Add("t", []byte("1"), uint8(3), "x", false)
	f.Add("", []byte{}, uint8(2), strings.Repeat("i", 36), true)
	f.Fuzz(func(t *testing.T, typ string, data []byte, kind uint8, id string, isBytes bool) {
		m := Message{Type: typ, Data: data, Kind: Kind(kind), ID: id, Bytes: isBytes}
		err := CheckFrame(&m)
		out, err2 := AppendFrame([]byte("pre"), &m)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("CheckFrame: %v, AppendFrame: %v", err, err2)
		}
		if err != nil {
			var ee *EncodeError
			if !errors.As(err, &ee) {
				t.Fatalf("error %T %v, want *EncodeError", err, err)
			}
			equalBytes(t, "output after refusal", out, []byte("pre"))
			return
		}
		if kind > uint8(Response) {
			t.Fatalf("kind %d accepted", kind)
		}
		frame := out[3:]
		equal(t, "FrameSize", FrameSize(&m), len(frame))
		split := AppendFrameHeader(nil, &m, len(data))
		split = append(split, data...)
		if m.Kind != Plain {
			split = append(split, id...)
			split = append(split, make([]byte, CallbackIDLen-len(id))...)
		}
		equalBytes(t, "AppendFrameHeader frame", split, frame)

		got := decodeChunks(t, [][]byte{frame}, decodeOpts{binary: true})
		if !isBytes && !json.Valid(data) {
			// CheckFrame does not parse JSON data (it is the caller's
			// Marshal output); the receiver refuses it and stays in sync.
			sameResult(t, "frame with invalid JSON data", got, decodeResult{Outs: []outcome{{Err: CodeDeserializeFailed}}})
			return
		}
		want := outcome{Kind: m.Kind, Type: perByteValid(typ), HasType: true, Data: string(data), Bytes: isBytes, Binary: true}
		if m.Kind != Plain {
			want.ID = id
		}
		if len(frame) > DefaultMaxMessage+frameHeaderLen {
			sameResult(t, "frame over the limit", got, decodeResult{Err: (&SizeError{Size: int64(len(frame) - frameHeaderLen), Limit: DefaultMaxMessage, Binary: true}).Error()})
			return
		}
		sameResult(t, "decoded frame", got, decodeResult{Outs: []outcome{want}})
	})
}

// jsTruthy reports whether JSON value text is truthy in JavaScript.
func jsTruthy(t *testing.T, raw []byte) bool {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		// Digits other than zero before the exponent make it non-zero;
		// 1e-400 reads as 0 in JavaScript, 1e400 as Infinity.
		mant, exp, _ := strings.Cut(strings.ToLower(string(x)), "e")
		if strings.Trim(mant, "-0.") == "" {
			return false
		}
		var e int
		fmt.Sscan(exp, &e)
		return e > -330
	}
	return true // object or array
}

// FuzzJSONLineRoundTrip writes a message from arbitrary fields as a JSON
// line and reads it back with a Decoder. Data that is not valid JSON is
// not tested: AppendJSONLine documents it as the caller's problem.
func FuzzJSONLineRoundTrip(f *testing.F) {
	for _, r := range readJSONL[lineRow](f, "json-lines.jsonl") {
		if r.LineHex == "" {
			continue
		}
		m := readEnvelope(f, []byte(r.LineText)).message(f)
		f.Add(m.Type, []byte(m.Data), uint8(m.Kind), m.ID, m.Bytes, uint8(termIndex(f, string(unhex(f, r.TerminatorHex)))))
	}
	f.Add("Buffer", []byte(`"YWJj"`), uint8(0), "", false, uint8(0))
	f.Add("A", []byte("[1,\n2]"), uint8(1), "[1,\n2]", false, uint8(2))
	f.Add("\xff", []byte(nil), uint8(2), "0", false, uint8(1))
	f.Fuzz(func(t *testing.T, typ string, data []byte, kind uint8, id string, isBytes bool, termSel uint8) {
		term := []byte(fuzzTerms[int(termSel)%len(fuzzTerms)])
		m := Message{Type: typ, Kind: Kind(kind % 3), ID: id, Bytes: isBytes, Data: data}
		if !isBytes {
			if len(data) == 0 {
				m.Data = nil
			} else if !json.Valid(data) {
				return
			}
		}
		// An id that is JSON but not a string is a peer's non-string id,
		// echoed as its JSON text.
		if trimmed := trimJSONSpace([]byte(id)); len(trimmed) > 0 && trimmed[0] != '"' && json.Valid(trimmed) {
			m.RawID = []byte(id)
		}
		line := AppendJSONLine(nil, &m, term)
		if i := bytes.Index(line, term); i != len(line)-len(term) {
			t.Fatalf("line %q has its terminator %q at %d", line, term, i)
		}
		d := NewDecoder(bytes.NewReader(line), term, len(line))
		got, err := d.Next()
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if _, err := d.Next(); err != io.EOF {
			t.Fatalf("line %q read as more than one message: %v", line, err)
		}

		equal(t, "type", got.Type, perByteValid(typ))
		equal(t, "hasType", got.HasType, true)
		wantKind := m.Kind
		switch {
		case m.RawID != nil:
			if !jsTruthy(t, m.RawID) {
				wantKind = Plain
			}
		case m.ID == "":
			wantKind = Plain
		}
		equal(t, "kind", got.Kind, wantKind)
		if wantKind != Plain {
			if m.RawID != nil {
				equal(t, "raw id", compactJSON(t, got.RawID), compactJSON(t, m.RawID))
				equal(t, "id", got.ID, string(got.RawID))
			} else {
				equal(t, "id", got.ID, perByteValid(id))
			}
		}
		switch {
		case isBytes && typ == TypeBuffer:
			equal(t, "bytes", got.Bytes, true)
			equalBytes(t, "buffer data", got.Data, data)
		case isBytes:
			// A typed buffer has no JSON-mode form: it arrives as the
			// base64 string under its type.
			equal(t, "bytes", got.Bytes, false)
			equal(t, "data", string(got.Data), `"`+base64.StdEncoding.EncodeToString(data)+`"`)
		case m.Data == nil:
			if got.Data != nil {
				t.Errorf("data %q appeared", got.Data)
			}
		case typ == TypeBuffer && trimJSONSpace(data)[0] == '"':
			// A JSON string under type "Buffer" is base64 to the
			// receiver (3.4).
			equal(t, "bytes", got.Bytes, true)
			var s string
			noErr(t, json.Unmarshal(data, &s))
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				equalBytes(t, "base64 data", got.Data, b)
			}
		default:
			equal(t, "bytes", got.Bytes, false)
			equal(t, "data", compactJSON(t, got.Data), compactJSON(t, data))
		}
	})
}

// FuzzMarshalString checks AppendString against encoding/json: valid JSON
// that decodes to s (invalid UTF-8 as U+FFFD per byte), no raw control
// character, and byte for byte the text encoding/json writes once HTML
// escaping is off and the escapes JSON.stringify does not use (U+2028,
// U+2029, U+FFFD) are undone.
func FuzzMarshalString(f *testing.F) {
	for _, r := range readJSONL[lineRow](f, "json-lines.jsonl") {
		f.Add(r.LineText)
	}
	for _, s := range []string{"", "a\u2028b\u2029", "\xff\xfe", `\u2028`, "<>&", "\x7f\x00\x1f\b\f\n\r\t", "\xed\xa0\x80", "\"\\/", "\uFFFD"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		if !json.Valid(out) {
			t.Fatalf("%q: output %q is not JSON", s, out)
		}
		for _, c := range out {
			if c < 0x20 {
				t.Fatalf("%q: output %q has raw control byte %#x", s, out, c)
			}
		}
		var back string
		noErr(t, json.Unmarshal(out, &back))
		equal(t, "decoded", back, perByteValid(s))

		var std bytes.Buffer
		enc := json.NewEncoder(&std)
		enc.SetEscapeHTML(false)
		noErr(t, enc.Encode(s))
		want := unescapeForJS(bytes.TrimSuffix(std.Bytes(), []byte("\n")))
		equal(t, "text", string(out), want)
	})
}

// unescapeForJS turns encoding/json's \u2028, \u2029 and \ufffd escapes
// back into the characters, leaving every other escape alone.
func unescapeForJS(b []byte) string {
	var out strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			out.WriteByte(b[i])
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' {
			switch string(b[i+2 : i+6]) {
			case "2028", "2029", "fffd":
				var r rune
				fmt.Sscanf(string(b[i+2:i+6]), "%x", &r)
				out.WriteRune(r)
				i += 5
				continue
			}
		}
		out.WriteByte(b[i])
		out.WriteByte(b[i+1])
		i++
	}
	return out.String()
}

// FuzzLazyJSON reads any binary stream with a validating and a lazy
// Decoder (SetLazyJSON): they must agree on every message and every error,
// except that an application message whose JSON data is not valid comes
// from the lazy one as a message marked Unchecked (with the same type and
// bytes) where the validating one reported it.
func FuzzLazyJSON(f *testing.F) {
	addStreamSeeds(f, true)
	f.Fuzz(func(t *testing.T, data []byte, _ uint64) {
		eager := NewDecoder(bytes.NewReader(data), nil, fuzzLimit)
		eager.SwitchToBinary()
		lazy := NewDecoder(bytes.NewReader(data), nil, fuzzLimit)
		lazy.SwitchToBinary()
		lazy.SetLazyJSON(true)
		for range 1000 {
			em, eerr := eager.Next()
			lm, lerr := lazy.Next()
			if lm.Unchecked {
				if lm.Reserved() || lm.Bytes {
					t.Fatalf("a %q message (bytes %v) left unchecked", lm.Type, lm.Bytes)
				}
				if Valid(lm.Data) {
					if eerr != nil {
						t.Fatalf("valid data %q: the validating decoder said %v", lm.Data, eerr)
					}
				} else {
					var de *DecodeError
					if !errors.As(eerr, &de) || de.Code != CodeDeserializeFailed {
						t.Fatalf("invalid data %q: the validating decoder said %v", lm.Data, eerr)
					}
					continue
				}
			}
			if (eerr == nil) != (lerr == nil) || (eerr != nil && errCode(eerr) != errCode(lerr)) {
				t.Fatalf("errors differ: %v / %v", eerr, lerr)
			}
			if eerr != nil {
				var de *DecodeError
				if errors.As(eerr, &de) {
					continue
				}
				return // the stream ended for both
			}
			if em.Type != lm.Type || em.Kind != lm.Kind || em.ID != lm.ID || em.Bytes != lm.Bytes || !bytes.Equal(em.Data, lm.Data) {
				t.Fatalf("messages differ: %+v / %+v", em, lm)
			}
		}
	})
}

// errCode is a *DecodeError's code (a frame with two problems may be
// reported for either), or any other error's text.
func errCode(err error) string {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Code
	}
	return err.Error()
}
