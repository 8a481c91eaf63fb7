package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// binRow is one line of binary-frames.jsonl.
type binRow struct {
	Kind   string
	Name   string
	Schema string
	MsgID  int `json:"msg_id"`
	Input  struct {
		Type       string
		Data       json.RawMessage
		DataHex    *string `json:"data_hex"`
		DataJS     string  `json:"data_js"`
		CallbackID *string `json:"callback_id"`
	}
	Hex           string
	PayloadLength int `json:"payload_length"`
	Fields        struct {
		Type       string
		DataJSON   *string `json:"data_json"`
		DataHex    *string `json:"data_hex"`
		CallbackID string  `json:"callback_id"`
	}
	ChunksHex []string `json:"chunks_hex"`
	Objects   []struct {
		MsgID      int `json:"msg_id"`
		Type       string
		Data       json.RawMessage
		DataHex    *string `json:"data_hex"`
		CallbackID string  `json:"callback_id"`
	}
	Errors []struct {
		Code         string
		AfterObjects int `json:"after_objects"`
	}
	BufferedBytes int `json:"buffered_bytes"`
}

// skips counts rows a vector test could not exercise, with the reason.
type skips struct {
	total, checked int
	reasons        map[string][]string
}

func (s *skips) skip(name, reason string) {
	if s.reasons == nil {
		s.reasons = map[string][]string{}
	}
	s.reasons[reason] = append(s.reasons[reason], name)
}

func (s *skips) log(t *testing.T, file string) {
	t.Helper()
	n := 0
	var why []string
	for reason, names := range s.reasons {
		n += len(names)
		why = append(why, fmt.Sprintf("%s (%s)", reason, strings.Join(names, ", ")))
	}
	t.Logf("%s: %d rows, %d checked, %d skipped: %s", file, s.total, s.checked, n, strings.Join(why, "; "))
	if s.checked+n != s.total {
		t.Errorf("%s: %d checked + %d skipped != %d rows", file, s.checked, n, s.total)
	}
}

// messageFromBinRow builds the Message a Go sender would pass for an encode
// or encode_error row. ok is false when Go cannot express the input.
func messageFromBinRow(t *testing.T, r binRow) (m Message, ok bool) {
	t.Helper()
	m.Type = r.Input.Type
	m.Kind = Kind((r.MsgID - FrameJSON) % 3)
	m.Bytes = r.MsgID >= FrameBuffer
	if r.Input.CallbackID != nil {
		m.ID = *r.Input.CallbackID
	}
	switch {
	case r.Input.DataHex != nil:
		if !m.Bytes {
			return m, false
		}
		m.Data = unhex(t, *r.Input.DataHex)
	case m.Bytes:
		// A byte layout given a non-byte value: Message.Data of a Bytes
		// message is []byte by construction, so Go cannot make this mistake.
		return m, false
	case r.Kind == "encode":
		m.Data = []byte(*r.Fields.DataJSON)
	case r.Input.Data != nil:
		var b bytes.Buffer
		noErr(t, json.Compact(&b, r.Input.Data))
		m.Data = b.Bytes()
	default:
		// data_js with no JSON form (a function): Marshal has nothing to
		// give, which a Message carries as nil Data.
		m.Data = nil
	}
	return m, true
}

func TestVectorsBinaryFrames(t *testing.T) {
	rows := readJSONL[binRow](t, "binary-frames.jsonl")
	var s skips
	s.total = len(rows)
	for _, r := range rows {
		t.Run(r.Name, func(t *testing.T) {
			switch r.Kind {
			case "encode":
				checkBinaryEncode(t, r)
				s.checked++
			case "encode_error":
				m, ok := messageFromBinRow(t, r)
				if !ok {
					s.skip(r.Name, "Go's type system rules the input out (Bytes data is always []byte)")
					return
				}
				err := CheckFrame(&m)
				var ee *EncodeError
				if !errors.As(err, &ee) {
					t.Fatalf("CheckFrame = %v, want *EncodeError", err)
				}
				dst := []byte("keep")
				out, err := AppendFrame(dst, &m)
				if !errors.As(err, &ee) {
					t.Fatalf("AppendFrame error = %v, want *EncodeError", err)
				}
				equalBytes(t, "AppendFrame output after refusal", out, []byte("keep"))
				if !strings.Contains(err.Error(), CodeSerializeFailed) {
					t.Errorf("error %q does not name %s", err, CodeSerializeFailed)
				}
				s.checked++
			case "decode":
				checkBinaryDecode(t, r)
				s.checked++
			default:
				t.Fatalf("unknown row kind %q", r.Kind)
			}
		})
	}
	s.log(t, "binary-frames.jsonl")
}

func checkBinaryEncode(t *testing.T, r binRow) {
	t.Helper()
	m, ok := messageFromBinRow(t, r)
	if !ok {
		t.Fatal("encode row not expressible")
	}
	want := unhex(t, r.Hex)
	noErr(t, CheckFrame(&m))
	got, err := AppendFrame(nil, &m)
	noErr(t, err)
	equalBytes(t, "frame", got, want)
	equal(t, "FrameSize", FrameSize(&m), len(want))
	equal(t, "FrameID", int(FrameID(&m)), r.MsgID)
	equal(t, "payload length", len(want)-frameHeaderLen, r.PayloadLength)

	// AppendFrameHeader + data + id gives the same bytes.
	split := AppendFrameHeader(nil, &m, len(m.Data))
	split = append(split, m.Data...)
	if m.Kind != Plain {
		split = append(split, m.ID...)
		split = append(split, make([]byte, CallbackIDLen-len(m.ID))...)
	}
	equalBytes(t, "AppendFrameHeader frame", split, want)

	// Appending to a non-empty buffer keeps the prefix.
	got, err = AppendFrame([]byte("pre"), &m)
	noErr(t, err)
	equalBytes(t, "prefixed frame", got, append([]byte("pre"), want...))

	// Decoding the frame gives the fields back.
	d := NewDecoder(&chunkReader{chunks: [][]byte{want}}, nil, 0)
	d.SwitchToBinary()
	outs, err := decodeAll(t, d)
	noErr(t, err)
	if len(outs) != 1 {
		t.Fatalf("decoded %v, want one message", outs)
	}
	o := outs[0]
	equal(t, "type", o.Type, r.Fields.Type)
	equal(t, "kind", o.Kind, m.Kind)
	equal(t, "bytes", o.Bytes, m.Bytes)
	equal(t, "binary", o.Binary, true)
	equal(t, "id", o.ID, r.Fields.CallbackID)
	if r.Fields.DataHex != nil {
		equalBytes(t, "data", []byte(o.Data), unhex(t, *r.Fields.DataHex))
	} else {
		equal(t, "data", o.Data, *r.Fields.DataJSON)
	}

	// Where the input is a plain JSON value, Marshal must give the
	// reference's text for it.
	if r.Input.Data != nil && !m.Bytes {
		v := orderedValue(t, r.Input.Data)
		b, err := Marshal(v)
		noErr(t, err)
		equal(t, "Marshal(input.data)", string(b), *r.Fields.DataJSON)
	}
}

// binaryDivergences are the decode rows where we deliberately differ from
// the reference, with the reason.
var binaryDivergences = map[string]string{
	// The reference reads the missing id as "": a request nobody can answer
	// and a response nobody waits for. We refuse the frame (and stay in sync).
	"dec-missing-callback-id": "refused with DESERIALIZE_FAILED instead of accepted with an empty id",
	// The reference has no size limit and buffers forever (14.3); we check
	// the announced length against the limit before buffering anything.
	"dec-huge-length": "refused with *SizeError (ErrMessageTooLarge) instead of waiting for 4 GiB",
}

func checkBinaryDecode(t *testing.T, r binRow) {
	t.Helper()
	var chunks [][]byte
	for _, c := range r.ChunksHex {
		chunks = append(chunks, unhex(t, c))
	}
	d := NewDecoder(&chunkReader{chunks: chunks}, nil, 0)
	d.SwitchToBinary()
	outs, termErr := decodeAll(t, d)

	// The reference's reading, objects and errors interleaved.
	type want struct {
		code   string
		obj    int
		hasObj bool
	}
	var wants []want
	for i := 0; i <= len(r.Objects); i++ {
		for _, e := range r.Errors {
			if e.AfterObjects == i {
				wants = append(wants, want{code: e.Code})
			}
		}
		if i < len(r.Objects) {
			wants = append(wants, want{obj: i, hasObj: true})
		}
	}
	switch r.Name {
	case "dec-missing-callback-id":
		wants[0] = want{code: CodeDeserializeFailed}
		t.Logf("divergence: %s", binaryDivergences[r.Name])
	case "dec-huge-length":
		if !errors.Is(termErr, ErrMessageTooLarge) {
			t.Fatalf("terminal error %v, want ErrMessageTooLarge", termErr)
		}
		var se *SizeError
		if !errors.As(termErr, &se) || se.Size != math.MaxUint32 || !se.Binary {
			t.Fatalf("terminal error %#v, want *SizeError of 4294967295 bytes", termErr)
		}
		termErr = nil
		t.Logf("divergence: %s", binaryDivergences[r.Name])
	}
	if r.BufferedBytes > 0 && r.Name != "dec-huge-length" {
		if termErr != io.ErrUnexpectedEOF {
			t.Errorf("terminal error %v, want io.ErrUnexpectedEOF for %d held bytes", termErr, r.BufferedBytes)
		}
	} else if termErr != nil {
		t.Errorf("terminal error %v", termErr)
	}
	equal(t, "Buffered()", d.Buffered(), r.BufferedBytes)

	if len(outs) != len(wants) {
		t.Fatalf("decoded %d results %v, want %d", len(outs), outs, len(wants))
	}
	for i, w := range wants {
		o := outs[i]
		if !w.hasObj {
			equal(t, fmt.Sprintf("result %d error", i), o.Err, w.code)
			continue
		}
		obj := r.Objects[w.obj]
		if o.Err != "" {
			t.Errorf("result %d: error %s, want message of type %q", i, o.Err, obj.Type)
			continue
		}
		equal(t, "type", o.Type, obj.Type)
		equal(t, "kind", o.Kind, Kind((obj.MsgID-FrameJSON)%3))
		equal(t, "bytes", o.Bytes, obj.MsgID >= FrameBuffer)
		equal(t, "id", o.ID, obj.CallbackID)
		if obj.DataHex != nil {
			equalBytes(t, "data", []byte(o.Data), unhex(t, *obj.DataHex))
		} else {
			jsonEqual(t, "data", []byte(o.Data), obj.Data)
		}
	}
}

// jsonEqual compares two JSON texts as values.
func jsonEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: got %q is not JSON: %v", what, got, err)
		return
	}
	noErr(t, json.Unmarshal(want, &w))
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: got %s, want %s", what, got, want)
	}
}

// jsonObject is a test-only ordered JSON object: encoding/json has no
// ordered map, and key order is part of the reference's bytes.
type jsonObject []jsonMember

type jsonMember struct {
	Key   string
	Value any
}

func (o jsonObject) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, m.Key)
		b = append(b, ':')
		var err error
		if b, err = AppendMarshal(b, m.Value); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// orderedValue decodes JSON text into nil, bool, float64, string, []any and
// jsonObject, keeping key order.
func orderedValue(t testing.TB, text []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(text))
	v, err := readOrdered(dec)
	noErr(t, err)
	return v
}

func readOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := jsonObject{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := readOrdered(dec)
			if err != nil {
				return nil, err
			}
			obj = append(obj, jsonMember{k.(string), v})
		}
		_, err := dec.Token()
		return obj, err
	case json.Delim('['):
		arr := []any{}
		for dec.More() {
			v, err := readOrdered(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.Token()
		return arr, err
	}
	return tok, nil
}

// lineRow is one line of json-lines.jsonl.
type lineRow struct {
	Name          string
	Side          string
	API           string
	LineText      string `json:"line_text"`
	LineHex       string `json:"line_hex"`
	TerminatorHex string `json:"terminator_hex"`
	Parsed        json.RawMessage
	WritesNothing bool `json:"writes_nothing"`
}

// refEnvelope is the test's own reading of an envelope: exact keys, raw
// values, independent of parseLine.
type refEnvelope struct {
	Type                string
	Data, ID, Callback  json.RawMessage
	HasData, HasID, HCB bool
}

func readEnvelope(t testing.TB, text []byte) refEnvelope {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(text))
	tok, err := dec.Token()
	noErr(t, err)
	if tok != json.Delim('{') {
		t.Fatalf("line %q is not an object", text)
	}
	var e refEnvelope
	for dec.More() {
		k, err := dec.Token()
		noErr(t, err)
		var raw json.RawMessage
		noErr(t, dec.Decode(&raw))
		switch k {
		case "type":
			noErr(t, json.Unmarshal(raw, &e.Type))
		case "data":
			e.Data, e.HasData = raw, true
		case "id":
			e.ID, e.HasID = raw, true
		case "callback_id":
			e.Callback, e.HCB = raw, true
		}
	}
	return e
}

// message returns the Message a Go sender passes to AppendJSONLine to write
// this envelope.
func (e refEnvelope) message(t testing.TB) Message {
	t.Helper()
	m := Message{Type: e.Type, HasType: true}
	if e.HasData {
		m.Data = e.Data
		if e.Type == TypeBuffer && e.Data[0] == '"' {
			var s string
			noErr(t, json.Unmarshal(e.Data, &s))
			b, err := base64.StdEncoding.DecodeString(s)
			noErr(t, err)
			m.Data, m.Bytes = b, true
		}
	}
	setID := func(raw json.RawMessage) {
		if raw[0] == '"' {
			noErr(t, json.Unmarshal(raw, &m.ID))
		} else {
			m.ID, m.RawID = string(raw), raw
		}
	}
	switch {
	case e.HCB:
		m.Kind = Response
		setID(e.Callback)
	case e.HasID:
		m.Kind = Request
		setID(e.ID)
	}
	return m
}

var loneSurrogate = regexp.MustCompile(`(?i)\\ud[89a-f][0-9a-f]{2}`)

func TestVectorsJSONLines(t *testing.T) {
	rows := readJSONL[lineRow](t, "json-lines.jsonl")
	var s, sv skips // whole rows; value-encoding sub-check
	s.total = len(rows)
	for _, r := range rows {
		t.Run(r.Name, func(t *testing.T) {
			if r.LineHex == "" {
				if !r.WritesNothing {
					t.Fatal("row without line_hex that does not say writes_nothing")
				}
				s.skip(r.Name, "writes nothing on the wire")
				return
			}
			s.checked++
			sv.total++
			line := unhex(t, r.LineHex)
			term := unhex(t, r.TerminatorHex)
			equalBytes(t, "line_hex = line_text + terminator", line, append([]byte(r.LineText), term...))
			env := readEnvelope(t, []byte(r.LineText))
			m := env.message(t)

			// (a) envelope encoding, byte for byte.
			got := AppendJSONLine(nil, &m, term)
			equalBytes(t, "AppendJSONLine", got, line)

			// (b) value encoding.
			switch {
			case !env.HasData:
				sv.skip(r.Name, "no data key (a function/symbol has no JSON form)")
			case loneSurrogate.MatchString(r.LineText):
				sv.skip(r.Name, "lone UTF-16 surrogate: a Go string cannot hold one")
			default:
				var parsed struct{ Data json.RawMessage }
				noErr(t, json.Unmarshal(r.Parsed, &parsed))
				b, err := Marshal(orderedValue(t, parsed.Data))
				noErr(t, err)
				equalBytes(t, "Marshal(parsed.data)", b, env.Data)
				sv.checked++
			}

			// (c) decoding with the receiver's rx terminator, which is this
			// row's tx terminator.
			d := NewDecoder(&chunkReader{chunks: [][]byte{line}}, term, 0)
			outs, err := decodeAll(t, d)
			noErr(t, err)
			if len(outs) != 1 || outs[0].Err != "" {
				t.Fatalf("decoded %v, want one message", outs)
			}
			o := outs[0]
			equal(t, "type", o.Type, m.Type)
			equal(t, "hasType", o.HasType, true)
			equal(t, "kind", o.Kind, m.Kind)
			equal(t, "id", o.ID, m.ID)
			equal(t, "rawID", o.RawID, string(m.RawID))
			equal(t, "bytes", o.Bytes, m.Bytes)
			equalBytes(t, "data", []byte(o.Data), m.Data)
			if m.Data == nil && o.Data != "" {
				t.Errorf("data %q, want none", o.Data)
			}
		})
	}
	s.log(t, "json-lines.jsonl")
	sv.log(t, "json-lines.jsonl value encoding (Marshal)")
}

// TestMarshalJSStringify covers what JSON.stringify does that encoding/json
// alone does not, for Go values (PROTOCOL.md 3.3), including the data_js rows
// of binary-frames.jsonl that a Go value can express.
func TestMarshalJSStringify(t *testing.T) {
	negZero := math.Copysign(0, -1)
	date := time.Date(2024, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"neg zero", negZero, "0"},
		{"neg zero in array", []float64{negZero, 1}, "[0,1]"},
		{"neg zero float32", float32(negZero), "0"},
		{"neg zero in struct", struct{ A float64 }{negZero}, `{"A":0}`},
		{"NaN top level", math.NaN(), "null"},
		{"+Inf top level", math.Inf(1), "null"},
		{"-Inf top level", math.Inf(-1), "null"},
		{"1e21", 1e21, "1e+21"},
		{"1e-7", 1e-7, "1e-7"},
		{"0.000001", 0.000001, "0.000001"},
		{"big integer", 123456789012345680000.0, "123456789012345680000"},
		{"max float", math.MaxFloat64, "1.7976931348623157e+308"},
		{"min subnormal", 5e-324, "5e-324"},
		// binary-frames.jsonl#json-number-edge with Go float64s.
		{"json-number-edge", []float64{negZero, 1e21, 1e-7, 0.000001, 123456789012345680000, 5e-324, 1.7976931348623157e308, -1.5, 9007199254740993, 0.1},
			"[0,1e+21,1e-7,0.000001,123456789012345680000,5e-324,1.7976931348623157e+308,-1.5,9007199254740992,0.1]"},
		{"U+2028 U+2029 raw", "a\u2028b\u2029c", "\"a\u2028b\u2029c\""},
		{"U+2028 in struct", struct{ S string }{"\u2028"}, "{\"S\":\"\u2028\"}"},
		{"html raw", "<>&", `"<>&"`},
		{"html raw in map", map[string]string{"<": "&"}, `{"<":"&"}`},
		{"control chars", "\x00\x01\x1f\b\f\n\r\t\x7f", `"\u0000\u0001\u001f\b\f\n\r\t` + "\x7f\""},
		{"quote backslash slash", `"\/`, `"\"\\/"`},
		{"escaped backslash then u2028 text", `\u2028`, `"\\u2028"`},
		{"minus zero in string", "-0", `"-0"`},
		{"negative fraction", -0.5, "-0.5"},
		{"date", ISODate(date), `"2024-01-02T03:04:05.678Z"`},
		{"nil", nil, "null"},
		{"bool", true, "true"},
		{"empty struct (Map/Set/RegExp/Error)", struct{}{}, "{}"},
		{"ordered key order (json-key-order)", jsonObject{{"2", 4.0}, {"10", 3.0}, {"zeta", 1.0}, {"alpha", 2.0}, {"mid", 5.0}}, `{"2":4,"10":3,"zeta":1,"alpha":2,"mid":5}`},
		{"uint8array as object", jsonObject{{"0", 1}, {"1", 2}, {"2", 3}}, `{"0":1,"1":2,"2":3}`},
		{"raw message compacted", json.RawMessage("{ \"a\" :\n[1, -0 ] }"), `{"a":[1,0]}`},
		{"raw message kept", json.RawMessage(`{"a":"x y"}`), `{"a":"x y"}`},
		{"raw message u2028 escape", json.RawMessage(`"\u2028"`), "\"\u2028\""},
		{"invalid utf8 string", "a\xff\xfeb", "\"a\uFFFD\uFFFDb\""},
		{"bytes are base64", []byte("abc"), `"YWJj"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.v)
			noErr(t, err)
			equal(t, "Marshal", string(got), tt.want)
			got, err = AppendMarshal([]byte("x"), tt.v)
			noErr(t, err)
			equal(t, "AppendMarshal", string(got), "x"+tt.want)
		})
	}

	t.Run("NaN nested is an error", func(t *testing.T) {
		// JSON.stringify would write null; encoding/json refuses. We report
		// it rather than silently writing something else.
		_, err := Marshal([]float64{math.NaN()})
		if err == nil || !strings.HasPrefix(err.Error(), "sockhop: ") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("invalid raw message", func(t *testing.T) {
		if _, err := Marshal(json.RawMessage("{")); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestISODate(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC), "2024-01-02T03:04:05.678Z"},
		// Truncated, not rounded: a JS Date holds whole milliseconds.
		{time.Date(2024, 1, 2, 3, 4, 5, 678_999_999, time.UTC), "2024-01-02T03:04:05.678Z"},
		{time.Date(2024, 1, 2, 4, 4, 5, 0, time.FixedZone("x", 3600)), "2024-01-02T03:04:05.000Z"},
		{time.Unix(0, 0), "1970-01-01T00:00:00.000Z"},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "+010000-01-01T00:00:00.000Z"},
		{time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), "-000001-01-01T00:00:00.000Z"},
		{time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), "0000-01-01T00:00:00.000Z"},
	}
	for _, tt := range tests {
		equal(t, tt.want, ISODate(tt.t), tt.want)
	}
}
