package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// Widget is sent by its Go type name, "Widget", the name of the JS class
// on the Node side.
type Widget struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// tricky is a string JSON encoders disagree on: non-ASCII, HTML characters
// (escaped by encoding/json by default), U+2028 (escaped by encoding/json
// always, raw in JSON.stringify), a quote and a newline.
const tricky = "héllo ✓ <&> \u2028 \"q\"\n\\"

// nodeKind is a value a Node peer sends and what the Go side receives.
type nodeKind struct {
	name  string
	cmd   map[string]any // the send/request command's fields besides "cmd"
	typ   string         // Message.Type on the Go side
	json  any            // the JSON data the Go side gets (when bytes is nil)
	bytes []byte         // non-nil: the Go side gets bytes (IsBytes)
	none  bool           // no "data" key on the wire: JSON() is nil
	falsy bool           // a 1.8.4 server refuses to send it (ERR_BAD_DATA)
	raw   bool           // needs the raw envelope, which "request" lacks
}

var nodeKinds = []nodeKind{
	{name: "String", cmd: map[string]any{"data": tricky}, typ: "String", json: tricky},
	{name: "empty String", cmd: map[string]any{"data": ""}, typ: "String", json: "", falsy: true},
	{name: "Number", cmd: map[string]any{"data": 42.5}, typ: "Number", json: 42.5},
	{name: "Number 0", cmd: map[string]any{"data": 0}, typ: "Number", json: 0, falsy: true},
	{name: "Boolean", cmd: map[string]any{"data": true}, typ: "Boolean", json: true},
	{name: "Boolean false", cmd: map[string]any{"data": false}, typ: "Boolean", json: false, falsy: true},
	{name: "Array", cmd: map[string]any{"data": []any{1, "x", nil, true, map[string]any{"k": []any{}}}}, typ: "Array",
		json: []any{1, "x", nil, true, map[string]any{"k": []any{}}}},
	{name: "Object", cmd: map[string]any{"data": map[string]any{"a": 1, "b": map[string]any{"c": []any{true, nil}}, "s": "t"}}, typ: "Object",
		json: map[string]any{"a": 1, "b": map[string]any{"c": []any{true, nil}}, "s": "t"}},
	{name: "class Widget", cmd: map[string]any{"class": "Widget", "data": map[string]any{"id": 7, "name": "w"}}, typ: "Widget",
		json: map[string]any{"id": 7, "name": "w"}},
	{name: "class Wïdgét✓", cmd: map[string]any{"class": "Wïdgét✓", "data": map[string]any{"x": 1}}, typ: "Wïdgét✓",
		json: map[string]any{"x": 1}},
	// 1.8.4 has no base64 handling: it writes a Buffer as Node's JSON form,
	// {"type":"Buffer","data":{"type":"Buffer","data":[1,2,3,255]}}. The Go
	// library delivers that as 2.x does (PROTOCOL.md 3.4): type "Buffer",
	// JSON data (the array form), IsBytes false, Bytes nil.
	{name: "Buffer (1.x array form)", cmd: map[string]any{"base64": "AQID/w=="}, typ: "Buffer",
		json: json.RawMessage(arrayForm([]byte{1, 2, 3, 255}))},
	{name: "empty Buffer (1.x array form)", cmd: map[string]any{"base64": ""}, typ: "Buffer",
		json: json.RawMessage(arrayForm(nil))},
	// What a 2.x or Go peer writes: base64, which the Go side decodes.
	{name: "Buffer (2.x base64 form)", cmd: map[string]any{"type": "Buffer", "data": "AQID/w=="}, typ: "Buffer",
		bytes: []byte{1, 2, 3, 255}, raw: true},
	{name: "Date", cmd: map[string]any{"type": "Date", "data": "2024-01-02T03:04:05.678Z"}, typ: "Date",
		json: "2024-01-02T03:04:05.678Z", raw: true},
	{name: "Function (no data key)", cmd: map[string]any{"type": "Function"}, typ: "Function", none: true, raw: true},
}

// checkFromNode checks what the Go side got for k.
func checkFromNode(t testing.TB, k nodeKind, m *sockhop.Message) {
	t.Helper()
	if m.Type != k.typ {
		t.Errorf("%s: Go got type %q, want %q", k.name, m.Type, k.typ)
	}
	switch {
	case k.bytes != nil:
		if !m.IsBytes() || string(m.Bytes()) != string(k.bytes) || m.JSON() != nil {
			t.Errorf("%s: Go got IsBytes %v bytes %v JSON %s, want bytes %v", k.name, m.IsBytes(), m.Bytes(), m.JSON(), k.bytes)
		}
		var b []byte
		if err := m.Decode(&b); err != nil || string(b) != string(k.bytes) {
			t.Errorf("%s: Decode(*[]byte) = %v, %v", k.name, b, err)
		}
	case k.none:
		if m.IsBytes() || m.JSON() != nil {
			t.Errorf("%s: Go got IsBytes %v JSON %q, want no data", k.name, m.IsBytes(), m.JSON())
		}
	default:
		want, _ := json.Marshal(k.json)
		if m.IsBytes() || m.Bytes() != nil || !jsonEqual(m.JSON(), want) {
			t.Errorf("%s: Go got IsBytes %v bytes %v JSON %s, want JSON %s", k.name, m.IsBytes(), m.Bytes(), m.JSON(), want)
		}
	}
	if m.Type == "String" {
		var s string
		if err := m.Decode(&s); err != nil || s != k.json {
			t.Errorf("%s: Decode(*string) = %q, %v; want %q", k.name, s, err, k.json)
		}
	}
	if m.Type == "Date" {
		var d time.Time
		if err := m.Decode(&d); err != nil || !d.Equal(time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC)) {
			t.Errorf("%s: Decode(*time.Time) = %v, %v", k.name, d, err)
		}
	}
}

// nodeSendsEveryKind has the peer send every kind and checks, in order,
// what the Go application receives.
func nodeSendsEveryKind(t *testing.T, p *peer, in *inbox, nodeIsServer bool) {
	t.Helper()
	var sent []nodeKind
	for _, k := range nodeKinds {
		if nodeIsServer && k.falsy {
			continue // see TestNodeServerRefusesFalsy
		}
		cmd := map[string]any{"cmd": "send"}
		for key, v := range k.cmd {
			cmd[key] = v
		}
		p.send(cmd)
		sent = append(sent, k)
	}
	for _, k := range sent {
		m := in.next(t, k.name)
		if m.IsRequest() {
			t.Errorf("%s: arrived as a request", k.name)
		}
		checkFromNode(t, k, m)
	}
	in.empty(t)
}

// goKind is a value the Go side sends and what the Node peer receives.
type goKind struct {
	name string
	v    any
	typ  string  // meta.type on the Node side
	data any     // data on the Node side (1.8.4 delivers base64 strings as is)
	b64  *string // the peer's "base64" key: the bytes of a Buffer
}

func strp(s string) *string { return &s }

var goKinds = []goKind{
	{name: "string", v: tricky, typ: "String", data: tricky},
	{name: "empty string", v: "", typ: "String", data: ""},
	{name: "int", v: 42, typ: "Number", data: 42},
	{name: "zero", v: 0, typ: "Number", data: 0},
	{name: "float", v: -1.5, typ: "Number", data: -1.5},
	{name: "true", v: true, typ: "Boolean", data: true},
	{name: "false", v: false, typ: "Boolean", data: false},
	{name: "slice", v: []any{1, "x", nil}, typ: "Array", data: []any{1, "x", nil}},
	{name: "map", v: map[string]any{"a": 1, "b": []any{true}}, typ: "Object", data: map[string]any{"a": 1, "b": []any{true}}},
	{name: "anonymous struct", v: struct {
		A int `json:"a"`
	}{1}, typ: "Object", data: map[string]any{"a": 1}},
	{name: "Named Widget", v: sockhop.Named{Type: "Widget", Data: map[string]any{"id": 7}}, typ: "Widget", data: map[string]any{"id": 7}},
	{name: "struct Widget", v: Widget{ID: 8, Name: "go"}, typ: "Widget", data: map[string]any{"id": 8, "name": "go"}},
	{name: "Named Wïdgét✓", v: sockhop.Named{Type: "Wïdgét✓", Data: map[string]any{"x": 1}}, typ: "Wïdgét✓", data: map[string]any{"x": 1}},
	{name: "Named with null data", v: sockhop.Named{Type: "Thing"}, typ: "Thing", data: nil},
	{name: "raw JSON", v: json.RawMessage(`{"raw":[1,2]}`), typ: "Object", data: map[string]any{"raw": []any{1, 2}}},
	{name: "time", v: time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC), typ: "Date", data: "2024-01-02T03:04:05.678Z"},
	{name: "[]byte", v: []byte{0, 1, 2, 254, 255}, typ: "Buffer", data: "AAEC/v8=", b64: strp("AAEC/v8=")},
	{name: "empty []byte", v: []byte{}, typ: "Buffer", data: "", b64: strp("")},
}

// checkAtNode checks a peer's receive event for k.
func checkAtNode(t testing.TB, k goKind, ev event) {
	t.Helper()
	want, _ := json.Marshal(k.data)
	if ev.Type != k.typ || !jsonEqual(ev.Data, want) || ev.Request {
		t.Errorf("%s: Node received type %q data %s request %v, want type %q data %s", k.name, ev.Type, ev.Data, ev.Request, k.typ, want)
	}
	switch {
	case k.b64 == nil && ev.Base64 != nil:
		t.Errorf("%s: Node saw Buffer bytes %q, want none", k.name, *ev.Base64)
	case k.b64 != nil && (ev.Base64 == nil || *ev.Base64 != *k.b64):
		t.Errorf("%s: Node saw Buffer bytes %v, want base64 %q", k.name, ev.Base64, *k.b64)
	}
}

// goSendsEveryKind sends every kind with send and checks, in order, what
// the peer receives.
func goSendsEveryKind(t *testing.T, p *peer, send func(ctx context.Context, v any) error) {
	t.Helper()
	ctx := testCtx(t)
	for _, k := range goKinds {
		noError(t, send(ctx, k.v), "Send "+k.name)
	}
	for i, ev := range p.receives(len(goKinds)) {
		checkAtNode(t, goKinds[i], ev)
	}
}

// nodeRequestsGo has the peer send requests and checks the answers of
// goAnswer as the peer's callback sees them, and that the Go application
// saw each as a request of the right type.
func nodeRequestsGo(t *testing.T, p *peer, in *inbox) {
	t.Helper()
	type req struct {
		cmd      map[string]any
		typ      string // reply type at the Node side
		data     any    // reply data at the Node side
		b64      string // reply bytes (Buffer replies)
		isBuffer bool
	}
	reqs := []req{
		{cmd: map[string]any{"data": map[string]any{"q": 1}}, typ: "Object",
			data: map[string]any{"go_echo": map[string]any{"q": 1}, "type": "Object"}},
		{cmd: map[string]any{"data": tricky}, typ: "Object",
			data: map[string]any{"go_echo": tricky, "type": "String"}},
		{cmd: map[string]any{"data": 7}, typ: "Object",
			data: map[string]any{"go_echo": 7, "type": "Number"}},
		{cmd: map[string]any{"class": "Widget", "data": map[string]any{"id": 3}}, typ: "Object",
			data: map[string]any{"go_echo": map[string]any{"id": 3}, "type": "Widget"}},
		// A Buffer request arrives at Go in the 1.x array form; Go answers
		// with the reversed bytes as a []byte, which goes out as base64 and
		// reaches 1.8.4's callback as the base64 string.
		{cmd: map[string]any{"base64": "AQID/w=="}, typ: "Buffer", data: "/wMCAQ==", b64: "/wMCAQ==", isBuffer: true},
	}
	for i, r := range reqs {
		cmd := map[string]any{"cmd": "request", "id": i + 1}
		for key, v := range r.cmd {
			cmd[key] = v
		}
		p.send(cmd)
	}
	for i, r := range reqs {
		ev := p.reply(i + 1)
		want, _ := json.Marshal(r.data)
		if ev.Type != r.typ || !jsonEqual(ev.Data, want) {
			t.Errorf("request %d %v: Node got reply type %q data %s, want type %q data %s", i+1, r.cmd, ev.Type, ev.Data, r.typ, want)
		}
		if r.isBuffer && (ev.Base64 == nil || *ev.Base64 != r.b64) {
			t.Errorf("request %d: reply bytes %v, want base64 %q", i+1, ev.Base64, r.b64)
		}
	}
	seen := map[string]int{}
	for range reqs {
		m := in.next(t, "request")
		if !m.IsRequest() {
			t.Errorf("Go saw %v as a plain message", m)
		}
		seen[m.Type]++
	}
	if want := map[string]int{"Object": 1, "String": 1, "Number": 1, "Widget": 1, "Buffer": 1}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("Go saw requests of types %v, want %v", seen, want)
	}
}

// goRequestsNode sends requests with request and checks the peer's
// answers ({"echo": D, "type": T}, or the reversed bytes for a Buffer).
func goRequestsNode(t *testing.T, request func(ctx context.Context, v any) (*sockhop.Message, error)) {
	t.Helper()
	ctx := testCtx(t)
	cases := []struct {
		v    any
		data any // the echo at the Node side
		typ  string
	}{
		{map[string]any{"q": "go"}, map[string]any{"q": "go"}, "Object"},
		{tricky, tricky, "String"},
		{Widget{ID: 1, Name: "w"}, map[string]any{"id": 1, "name": "w"}, "Widget"},
		{sockhop.Named{Type: "Wïdgét✓", Data: []int{1}}, []any{1}, "Wïdgét✓"},
		{false, false, "Boolean"},
	}
	for _, c := range cases {
		m, err := request(ctx, c.v)
		noError(t, err, fmt.Sprintf("Request(%v)", c.v))
		want, _ := json.Marshal(map[string]any{"echo": c.data, "type": c.typ})
		if m.Type != "Object" || m.IsBytes() || !jsonEqual(m.JSON(), want) || m.IsRequest() {
			t.Errorf("Request(%v): reply type %q JSON %s IsRequest %v, want Object %s", c.v, m.Type, m.JSON(), m.IsRequest(), want)
		}
	}

	// A Buffer request: 1.8.4 receives our base64, the peer answers with the
	// reversed bytes as a Buffer, which 1.8.4 writes in the array form. The
	// Go reply is then type "Buffer" with the array form as JSON data (not
	// bytes), exactly like a plain 1.x Buffer message.
	m, err := request(ctx, []byte{1, 2, 3, 255})
	noError(t, err, "Request([]byte)")
	if m.Type != "Buffer" || m.IsBytes() || m.Bytes() != nil || !jsonEqual(m.JSON(), []byte(arrayForm([]byte{255, 3, 2, 1}))) {
		t.Errorf("Request([]byte): reply type %q IsBytes %v bytes %v JSON %s, want Buffer with JSON %s",
			m.Type, m.IsBytes(), m.Bytes(), m.JSON(), arrayForm([]byte{255, 3, 2, 1}))
	}
	if b, ok := bufferBytes(m); !ok || string(b) != string([]byte{255, 3, 2, 1}) {
		t.Errorf("Request([]byte): reply bytes %v %v, want [255 3 2 1]", b, ok)
	}

	// Many requests at once: each reply reaches its own caller.
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := request(ctx, map[string]any{"i": i})
			if err != nil {
				errs <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			want, _ := json.Marshal(map[string]any{"echo": map[string]any{"i": i}, "type": "Object"})
			if !jsonEqual(m.JSON(), want) {
				errs <- fmt.Errorf("request %d: reply %s, want %s", i, m.JSON(), want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
