package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

type behaviourRow struct {
	Name   string
	Target string
	Input  struct {
		Writes  []string
		Actions []string
	}
}

// rawLinesWithoutTerminator are rows whose writes show a raw line without
// its terminator; the observed crash ("reading 'type'" of null, ...) shows a
// whole line was processed, so the harness sent it with "\n".
var rawLinesWithoutTerminator = map[string]bool{
	"client-json-null-line":                 true,
	"client-unknown-callback-id":            true,
	"client-corrupt-line-no-error-listener": true,
	"server-slow-session-start":             true,
}

// behaviourBytes returns the bytes a row's raw peer wrote, or a reason why
// the row gives only labels.
func behaviourBytes(t *testing.T, r behaviourRow) ([]byte, string) {
	t.Helper()
	if !strings.Contains(r.Target, "2.1.0") {
		return nil, "target is not a 2.x peer"
	}
	if len(r.Input.Writes) == 0 {
		return nil, "no writes (API or socket actions only)"
	}
	var hexes, raw []byte
	nHex := 0
	for _, w := range r.Input.Writes {
		if i := strings.Index(w, " hex="); i >= 0 {
			hexes = append(hexes, unhex(t, w[i+len(" hex="):])...)
			nHex++
			continue
		}
		raw = append(raw, w...)
	}
	if nHex > 0 {
		// Label-only writes beside hex ones (bin-huge-length's "8 MiB of
		// payload bytes") are dropped: the hex part is the probe.
		return hexes, ""
	}
	s := string(raw)
	switch {
	case rawLinesWithoutTerminator[r.Name]:
		return append(raw, '\n'), ""
	case strings.HasSuffix(s, "\n"):
		return raw, ""
	}
	return nil, "writes are descriptions, not bytes"
}

// TestVectorsBehaviour feeds what raw peers wrote to a 2.x library into a
// Decoder: whatever crashed or confused the reference must decode to
// messages or *DecodeError, in every chunking.
func TestVectorsBehaviour(t *testing.T) {
	rows := readJSONL[behaviourRow](t, "behaviour.jsonl")
	var s skips
	s.total = len(rows)
	results := map[string][]outcome{}
	for _, r := range rows {
		input, why := behaviourBytes(t, r)
		if input == nil {
			s.skip(r.Name, why)
			continue
		}
		s.checked++
		t.Run(r.Name, func(t *testing.T) {
			outs, err := decodeAll(t, NewDecoder(&chunkReader{chunks: [][]byte{input}}, nil, 0))
			if err != nil && !errors.Is(err, ErrMessageTooLarge) && err != io.ErrUnexpectedEOF {
				t.Fatalf("terminal error %v", err)
			}
			results[r.Name] = outs
			// The same bytes one at a time give the same reading.
			one := NewDecoder(&chunkReader{chunks: splitEvery(input, 1)}, nil, 0)
			outs1, err1 := decodeAll(t, one)
			equal(t, "byte-by-byte results", outs1, outs)
			equal(t, "byte-by-byte terminal error", errText(err1), errText(err))
		})
	}
	s.log(t, "behaviour.jsonl")

	// What the crash inputs of PROTOCOL.md 14.2 (and the other probes with
	// a notable reading) decode to.
	msg := func(typ, data string) outcome {
		return outcome{Type: typ, HasType: typ != "", Data: data}
	}
	req := func(o outcome, id, raw string) outcome { o.Kind, o.ID, o.RawID = Request, id, raw; return o }
	resp := func(o outcome, id string) outcome { o.Kind, o.ID = Response, id; return o }
	bin := func(o outcome) outcome { o.Binary = true; return o }
	handshake := req(msg(TypeHandshake, `{"protocol_version":2,"library_version":"2.1.0","request_binary_mode":true}`), "0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a", "")
	reply := resp(msg("Object", `{"allow_binary_mode":true}`), "8bbd57a4-00bd-43d2-a7e9-08a9709a9a43")
	transition := msg(TypeTransition, "{}")
	want := map[string][]outcome{
		"json-line-null":                    {{Data: "null"}},
		"client-json-null-line":             {{Data: "null"}},
		"json-line-number":                  {{Data: "5"}},
		"json-line-object-without-type":     {{Data: `{"a":1}`}},
		"json-corrupt-line-then-valid":      {{Err: CodeBadBufferData}, msg("String", `"after"`)},
		"json-empty-lines":                  {{Err: CodeBadBufferData}, {Err: CodeBadBufferData}, msg("Number", "1")},
		"json-crlf-line-default-terminator": {msg("Number", "1")},
		"json-unknown-callback-id":          {resp(msg("Object", "{}"), "no-such-callback")},
		"json-empty-callback-id":            {msg("Object", "1")},
		"json-request-numeric-id":           {req(msg("String", `"q"`), "5", "5")},
		"json-request-id-and-callback-id":   {resp(msg("String", `"q"`), "abc")},
		"json-ping-null-data":               {msg(TypePing, "null")},
		"json-ping-no-data":                 {{Type: TypePing, HasType: true}},
		"json-buffer-v1-form":               {msg("Buffer", `{"type":"Buffer","data":[1,2,3]}`)},
		"json-buffer-lenient-base64":        {{Type: "Buffer", HasType: true, Bytes: true, Data: "abc"}, {Type: "Buffer", HasType: true, Bytes: true, Data: "\xfb\xff"}},
		"json-invalid-utf8":                 {msg("String", "\"a\xff\xfeb\"")},
		"bin-unknown-msg-id":                {handshake, reply, transition, {Err: CodeNoSchema}, bin(msg("String", `"after"`))},
	}
	for name, w := range want {
		got, ok := results[name]
		if !ok {
			t.Errorf("%s: row missing or skipped", name)
			continue
		}
		equal(t, name, got, w)
	}
}

// TestCrashInputs covers the 14.2 inputs whose behaviour.jsonl rows only
// describe the bytes.
func TestCrashInputs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []outcome
	}{
		{"handshake with null data", `{"type":"SockhopHandshake","data":null,"id":"abc"}` + "\n",
			[]outcome{{Kind: Request, Type: TypeHandshake, HasType: true, Data: "null", ID: "abc"}}},
		{"handshake without id", `{"type":"SockhopHandshake","data":{}}` + "\n",
			[]outcome{{Type: TypeHandshake, HasType: true, Data: "{}"}}},
		{"duplicate response", `{"type":"Object","data":1,"callback_id":"x"}` + "\n" + `{"type":"Object","data":2,"callback_id":"x"}` + "\n",
			[]outcome{{Kind: Response, Type: "Object", HasType: true, Data: "1", ID: "x"}, {Kind: Response, Type: "Object", HasType: true, Data: "2", ID: "x"}}},
		{"type not a string", `{"type":5,"data":1}` + "\n", []outcome{{Data: `{"type":5,"data":1}`}}},
		{"array line", "[1,2]\n", []outcome{{Data: "[1,2]"}}},
		{"keys are case sensitive", `{"TYPE":"A","type":"B","Data":1,"ID":"x"}` + "\n",
			[]outcome{{Type: "B", HasType: true}}},
		{"last duplicate key wins", `{"type":"A","type":"B","data":1,"data":2}` + "\n",
			[]outcome{{Type: "B", HasType: true, Data: "2"}}},
		{"escaped key and type", `{"\u0074ype":"Sockhop\u0050ing","data":null}` + "\n",
			[]outcome{{Type: TypePing, HasType: true, Data: "null"}}},
		{"whitespace around values", " { \"type\" : \"A\" , \"data\" : [ 1 ] , \"id\" : 7 } \r\n",
			[]outcome{{Kind: Request, Type: "A", HasType: true, Data: "[ 1 ]", ID: "7", RawID: "7"}}},
		{"vertical tab is not JSON whitespace", "\v1\n", []outcome{{Err: CodeBadBufferData}}},
		{"huge numeric id is truthy", `{"type":"A","data":1,"id":1e400}` + "\n",
			[]outcome{{Kind: Request, Type: "A", HasType: true, Data: "1", ID: "1e400", RawID: "1e400"}}},
		{"tiny numeric id is falsy", `{"type":"A","data":1,"id":1e-400}` + "\n",
			[]outcome{{Type: "A", HasType: true, Data: "1"}}},
		{"object id is truthy", `{"type":"A","id":{}}` + "\n",
			[]outcome{{Kind: Request, Type: "A", HasType: true, ID: "{}", RawID: "{}"}}},
		{"false id and zero callback_id", `{"type":"A","id":false,"callback_id":0}` + "\n",
			[]outcome{{Type: "A", HasType: true}}},
		{"unterminated", `{"type":"A"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outs, err := decodeAll(t, NewDecoder(strings.NewReader(tt.in), nil, 0))
			if tt.want == nil {
				equal(t, "terminal error", err, io.ErrUnexpectedEOF)
			} else {
				noErr(t, err)
			}
			equal(t, "results", outs, tt.want)
		})
	}
}

func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPongCompactsCopiedValues: values copied from a ping into the pong are
// written back the way JSON.stringify writes them, whitespace dropped.
func TestPongCompactsCopiedValues(t *testing.T) {
	got := MarshalPong([]byte(`{"_id": {"a": [1, 2]}, "_created" : "x y"}`), time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC))
	want := `{"_id":{"a":[1,2]},"_created":"x y","_returned":"2024-01-02T03:04:05.678Z","_finished":null}`
	equal(t, "pong", string(got), want)
}
