package nodepeer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// delay is the emulated event loop's pause before each read: long enough
// that two writes of the raw side made back to back land in one read.
const delay = 20 * time.Millisecond

const wait = 5 * time.Second

// rawID is the handshake id the reference's probes used
// (behaviour.jsonl).
const rawID = "0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a"

var (
	handshakeRE  = regexp.MustCompile(`^\{"type":"SockhopHandshake","data":\{"protocol_version":2,"library_version":"2\.1\.0","request_binary_mode":true\},"id":"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})"\}$`)
	transitionLn = `{"type":"SockhopBinaryModeTransition","data":{}}`
)

// raw is the other side of an emulated peer, writing and reading bytes as
// the probes of behaviour.jsonl did.
type raw struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func newRaw(t *testing.T, c net.Conn) *raw {
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, c: c, r: bufio.NewReader(c)}
}

// rawServer returns a peer in the server role and the raw client connected
// to it.
func rawServer(t *testing.T, o Options) (*Peer, *raw) {
	t.Helper()
	srv, err := Listen("tcp", "127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peers, err := srv.WaitPeers(1, wait)
	if err != nil {
		t.Fatal(err)
	}
	return peers[0], newRaw(t, c)
}

// rawClient returns a peer in the client role and the raw server it dialled.
func rawClient(t *testing.T, o Options) (*Peer, *raw) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, err := Dial("tcp", ln.Addr().String(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return p, newRaw(t, c)
}

func (r *raw) write(parts ...[]byte) {
	r.t.Helper()
	if _, err := r.c.Write(bytes.Join(parts, nil)); err != nil {
		r.t.Fatal(err)
	}
}

// line reads one JSON line from the peer, without its "\n".
func (r *raw) line() string {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(wait))
	s, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("reading a line: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

// frame reads one binary frame from the peer and returns its bytes.
func (r *raw) frame() []byte {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(wait))
	head := make([]byte, 5)
	if _, err := io.ReadFull(r.r, head); err != nil {
		r.t.Fatalf("reading a frame header: %v", err)
	}
	f := make([]byte, 5+binary.LittleEndian.Uint32(head))
	copy(f, head)
	if _, err := io.ReadFull(r.r, f[5:]); err != nil {
		r.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// handshake reads the peer's handshake line and returns its id.
func (r *raw) handshake() string {
	r.t.Helper()
	l := r.line()
	m := handshakeRE.FindStringSubmatch(l)
	if m == nil || len(l)+1 != 155 {
		r.t.Fatalf("handshake line %q is not 2.1.0's", l)
	}
	return m[1]
}

// binaryUp does what a 2.x peer does with the emulated one: handshake,
// grant binary mode, and read the answer and the peer's transition line.
// The raw side's own transmit direction stays JSON.
func (r *raw) binaryUp() {
	r.t.Helper()
	id := r.handshake()
	r.write(rawHandshake(true), reply(id, true))
	if got, want := r.line(), `{"type":"Object","data":{"allow_binary_mode":true},"callback_id":"`+rawID+`"}`; got != want {
		r.t.Fatalf("handshake reply %q, want %q", got, want)
	}
	if got := r.line(); got != transitionLn {
		r.t.Fatalf("got %q, want the transition line", got)
	}
}

func rawHandshake(binary bool) []byte {
	return line(wire.Message{Type: wire.TypeHandshake, Data: wire.MarshalHandshake("2.1.0", binary), Kind: wire.Request, ID: rawID})
}

func reply(id string, allow bool) []byte {
	d, _ := json.Marshal(map[string]bool{"allow_binary_mode": allow})
	return line(wire.Message{Type: "Object", Data: d, Kind: wire.Response, ID: id})
}

func transition() []byte {
	return line(wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData})
}

func line(m wire.Message) []byte { return wire.AppendJSONLine(nil, &m, nil) }

func frame(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.AppendFrame(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func obj(typ, data string) wire.Message { return wire.Message{Type: typ, Data: []byte(data)} }

func ping(id string) wire.Message {
	return wire.Message{Type: wire.TypePing, Data: wire.MarshalPing(id, time.Now())}
}

// eventually polls cond every millisecond for up to wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantMsgs(t *testing.T, p *Peer, want ...Msg) {
	t.Helper()
	got, err := p.WaitMessages(len(want), wait)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d messages %v, want %v", len(got), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Type != w.Type || !bytes.Equal(g.Data, w.Data) || g.Bytes != w.Bytes || g.Request != w.Request || g.Binary != w.Binary || (w.ID != "" && g.ID != w.ID) {
			t.Errorf("message %d: got %v, want %v", i, g, w)
		}
	}
}

// behaviour.jsonl#transition-coalesced-with-frame: a server that gets the
// transition line and two frames in ONE read loses both frames (two
// corrupted pieces, 23 bytes stranded in the JSON buffer); a frame in a
// later read arrives.
func TestServerTransitionCoalescedWithFrame(t *testing.T) {
	p, r := rawServer(t, Options{ReadDelay: delay})
	r.binaryUp()
	r.write(transition(), frame(t, obj("Object", `{"first":1}`)), frame(t, obj("Object", `{"second":2}`)))
	eventually(t, "the coalesced read was handled", func() bool { return p.RxBinary() })
	r.write(frame(t, obj("Object", `{"third":3}`)))
	wantMsgs(t, p, Msg{Type: "Object", Data: []byte(`{"third":3}`), Binary: true})
	if got := p.Corrupted(); got != 2 {
		t.Errorf("corrupted: %d, want 2 (the reference reported two errors)", got)
	}
	if got := p.JSONBuffered(); got != 23 {
		t.Errorf("JSON buffer holds %d bytes, want the reference's 23", got)
	}
}

// behaviour.jsonl#client-transition-coalesced: the same on a client, one
// frame lost, 18 bytes stranded.
func TestClientTransitionCoalesced(t *testing.T) {
	p, r := rawClient(t, Options{ReadDelay: delay})
	r.binaryUp()
	r.write(transition(), frame(t, obj("String", `"lost?"`)))
	eventually(t, "the coalesced read was handled", func() bool { return p.RxBinary() })
	r.write(frame(t, obj("String", `"later"`)))
	wantMsgs(t, p, Msg{Type: "String", Data: []byte(`"later"`), Binary: true})
	if got := p.Corrupted(); got != 1 {
		t.Errorf("corrupted: %d, want 1", got)
	}
	if got := p.JSONBuffered(); got != 18 {
		t.Errorf("JSON buffer holds %d bytes, want the reference's 18", got)
	}
}

// Without the read delay the loss needs no help when the bytes come in one
// write: a single write of the transition and a frame is one read.
func TestTransitionAndFrameOneWriteNoDelay(t *testing.T) {
	p, r := rawServer(t, Options{})
	r.binaryUp()
	r.write(transition(), frame(t, obj("Object", `{"first":1}`)))
	eventually(t, "the read was handled", func() bool { return p.RxBinary() })
	r.write(frame(t, obj("Object", `{"n":2}`)))
	wantMsgs(t, p, Msg{Type: "Object", Data: []byte(`{"n":2}`), Binary: true})
	if p.Corrupted() == 0 {
		t.Error("no corrupted data reported")
	}
}

// A transition in a read of its own, frames in later reads: nothing lost.
func TestTransitionAloneThenFrames(t *testing.T) {
	p, r := rawServer(t, Options{ReadDelay: delay})
	r.binaryUp()
	r.write(transition())
	eventually(t, "rx switched", func() bool { return p.RxBinary() })
	r.write(frame(t, obj("Object", `{"a":1}`)), frame(t, wire.Message{Type: "Tile", Data: []byte{1, 10, 2}, Bytes: true}))
	wantMsgs(t, p,
		Msg{Type: "Object", Data: []byte(`{"a":1}`), Binary: true},
		Msg{Type: "Tile", Data: []byte{1, 10, 2}, Bytes: true, Binary: true})
	if got := p.Corrupted(); got != 0 {
		t.Errorf("corrupted: %d", got)
	}
	if got := p.JSONBuffered(); got != 0 {
		t.Errorf("JSON buffer holds %d bytes", got)
	}
}

// Pings are answered at once in the peer's current transmit mode: a JSON
// line before its switch (7.2), an id-10 frame after it
// (behaviour.jsonl#bin-ping). A binary ping in the same read as the other
// side's transition line is lost and not answered; the next one is (the
// probe of PROTOCOL.md 5.5).
func TestPings(t *testing.T) {
	p, r := rawServer(t, Options{ReadDelay: delay})
	id := r.handshake()
	r.write(rawHandshake(true), line(ping("p-json")))
	if got := r.line(); got != `{"type":"Object","data":{"allow_binary_mode":true},"callback_id":"`+rawID+`"}` {
		t.Fatalf("handshake reply %q", got)
	}
	pong := r.line()
	if !regexp.MustCompile(`^\{"type":"SockhopPong","data":\{"_id":"p-json","_created":"[^"]{24}","_returned":"[^"]{24}","_finished":null\}\}$`).MatchString(pong) {
		t.Fatalf("pong line %q", pong)
	}

	r.write(reply(id, true))
	if got := r.line(); got != transitionLn {
		t.Fatalf("got %q, want the transition line", got)
	}
	eventually(t, "tx switched", func() bool { return p.TxBinary() })
	r.write(line(ping("p-bin")))
	checkPongFrame(t, r.frame(), "p-bin")

	// The raw side switches: its transition and a binary ping in one write.
	r.write(transition(), frame(t, ping("p-lost")))
	eventually(t, "rx switched", func() bool { return p.RxBinary() })
	if p.Corrupted() == 0 {
		t.Error("the coalesced ping was not reported as corrupted")
	}
	r.write(frame(t, ping("p-later")))
	checkPongFrame(t, r.frame(), "p-later") // not p-lost: that one was never answered
	if msgs := p.Messages(); len(msgs) != 0 {
		t.Errorf("pings reached the application: %v", msgs)
	}
}

func checkPongFrame(t *testing.T, f []byte, id string) {
	t.Helper()
	m, ok := parseFrame(f)
	if !ok || f[4] != wire.FrameJSON || m.Type != wire.TypePong {
		t.Fatalf("not an id-10 SockhopPong frame: %x", f)
	}
	var d struct {
		ID string `json:"_id"`
	}
	if err := json.Unmarshal(m.Data, &d); err != nil || d.ID != id {
		t.Fatalf("pong %s, want _id %q", m.Data, id)
	}
}

// behaviour.jsonl#client-json-after-own-transition: the peer flips its
// transmit side only after the read that granted binary mode was handled,
// so the pong to a ping in that read is a JSON line after its transition
// line; what it sends afterwards is binary (the frame bytes are the
// reference's).
func TestJSONAfterOwnTransition(t *testing.T) {
	p, r := rawClient(t, Options{ReadDelay: delay, OnTxBinary: func(p *Peer) {
		_ = p.Send("String", "later")
	}})
	id := r.handshake()
	r.write(rawHandshake(false))
	if got := r.line(); got != `{"type":"Object","data":{"allow_binary_mode":false},"callback_id":"`+rawID+`"}` {
		t.Fatalf("handshake reply %q", got)
	}
	r.write(reply(id, true), line(ping("race")))
	if got := r.line(); got != transitionLn {
		t.Fatalf("got %q, want the transition line", got)
	}
	if got := r.line(); !strings.HasPrefix(got, `{"type":"SockhopPong","data":{"_id":"race",`) {
		t.Fatalf("got %q, want the JSON pong after the transition line", got)
	}
	if got, want := hex.EncodeToString(r.frame()), "120000000a06537472696e6707000000226c6174657222"; got != want {
		t.Fatalf("frame %s, want the reference's %s", got, want)
	}
	if !p.TxBinary() || p.RxBinary() {
		t.Errorf("tx %v rx %v, want tx binary, rx JSON", p.TxBinary(), p.RxBinary())
	}
}

// Echo answers requests at once in the current transmit mode: JSON before
// the switch, id 12 after it, and bytes with a Buffer (id 15).
func TestEcho(t *testing.T) {
	p, r := rawServer(t, Options{ReadDelay: delay, Echo: true})
	id := r.handshake()
	req := wire.Message{Type: "Widget", Data: []byte(`{"a":[1,2]}`), Kind: wire.Request, ID: "r-json"}
	r.write(rawHandshake(true), line(req))
	r.line() // handshake reply
	if got, want := r.line(), `{"type":"Widget","data":{"a":[1,2]},"callback_id":"r-json"}`; got != want {
		t.Fatalf("echo %q, want %q", got, want)
	}
	r.write(reply(id, true))
	if got := r.line(); got != transitionLn {
		t.Fatalf("got %q, want the transition line", got)
	}
	eventually(t, "tx switched", func() bool { return p.TxBinary() })
	req.ID = "r-bin-tx"
	r.write(line(req))
	want := frame(t, wire.Message{Type: "Widget", Data: []byte(`{"a":[1,2]}`), Kind: wire.Response, ID: "r-bin-tx"})
	if got := r.frame(); !bytes.Equal(got, want) {
		t.Fatalf("echo %x, want %x", got, want)
	}
	r.write(transition())
	eventually(t, "rx switched", func() bool { return p.RxBinary() })
	r.write(frame(t, wire.Message{Type: "Tile", Data: []byte{0, 10, 255}, Bytes: true, Kind: wire.Request, ID: "r-bytes"}))
	want = frame(t, wire.Message{Type: "Buffer", Data: []byte{0, 10, 255}, Bytes: true, Kind: wire.Response, ID: "r-bytes"})
	if got := r.frame(); !bytes.Equal(got, want) {
		t.Fatalf("echo %x, want %x", got, want)
	}
	wantMsgs(t, p,
		Msg{Type: "Widget", Data: []byte(`{"a":[1,2]}`), Request: true, ID: "r-json"},
		Msg{Type: "Widget", Data: []byte(`{"a":[1,2]}`), Request: true, ID: "r-bin-tx"},
		Msg{Type: "Tile", Data: []byte{0, 10, 255}, Bytes: true, Request: true, ID: "r-bytes", Binary: true})
}

// The peer's own requests, from its binary_mode:tx listener: frames with a
// UUID v4 id; replies are recorded, not delivered as messages.
func TestRequestFromPeer(t *testing.T) {
	ids := make(chan string, 1)
	p, r := rawClient(t, Options{ReadDelay: delay, OnTxBinary: func(p *Peer) {
		id, err := p.Request("Ask", map[string]int{"q": 1})
		if err != nil {
			t.Error(err)
		}
		ids <- id
	}})
	r.binaryUp()
	f := r.frame()
	m, ok := parseFrame(f)
	if !ok || f[4] != wire.FrameJSONRequest || m.Type != "Ask" || string(m.Data) != `{"q":1}` {
		t.Fatalf("request frame %x", f)
	}
	id := <-ids
	if m.ID != id || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("request id %q (returned %q)", m.ID, id)
	}
	r.write(line(wire.Message{Type: "String", Data: []byte(`"ok"`), Kind: wire.Response, ID: id}))
	got, err := p.WaitReply(id, wait)
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != "String" || string(got.Data) != `"ok"` {
		t.Errorf("reply %v", got)
	}
	if msgs := p.Messages(); len(msgs) != 0 {
		t.Errorf("a reply reached the application as a message: %v", msgs)
	}
}

// A frame that does not decode is counted and skipped; the stream stays in
// sync (4.5). A typed buffer cannot be sent while tx is JSON.
func TestBadFrameSkipped(t *testing.T) {
	p, r := rawServer(t, Options{ReadDelay: delay})
	if err := p.Send("Tile", []byte{1}); err == nil {
		t.Error("a typed buffer was sent in JSON mode")
	}
	r.binaryUp()
	r.write(transition())
	eventually(t, "rx switched", func() bool { return p.RxBinary() })
	bad := []byte{3, 0, 0, 0, 9, 1, 2, 3} // message id 9: no schema
	r.write(bad, frame(t, obj("Number", `7`)))
	wantMsgs(t, p, Msg{Type: "Number", Data: []byte(`7`), Binary: true})
	if got := p.Corrupted(); got != 1 {
		t.Errorf("corrupted: %d, want 1", got)
	}
}

// JSON lines that are not envelopes count as corrupted; a Buffer line is
// delivered as bytes; a handshake without request_binary_mode or without
// an id is answered as 2.1.0 does (behaviour.jsonl#handshake-no-validation,
// #handshake-without-id).
func TestJSONLines(t *testing.T) {
	p, r := rawServer(t, Options{ReadDelay: delay})
	r.handshake()
	r.write([]byte("garbage\n\n42\n"), line(wire.Message{Type: "Buffer", Data: []byte("abc"), Bytes: true}),
		[]byte(`{"type":"SockhopHandshake","data":{"protocol_version":99},"id":"`+rawID+`"}`+"\n"),
		[]byte(`{"type":"SockhopHandshake","data":{"protocol_version":2,"request_binary_mode":true}}`+"\n"))
	if got, want := r.line(), `{"type":"Object","data":{},"callback_id":"`+rawID+`"}`; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	if got, want := r.line(), `{"type":"Object","data":{"allow_binary_mode":true}}`; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	wantMsgs(t, p, Msg{Type: "Buffer", Data: []byte("abc"), Bytes: true})
	if got := p.Corrupted(); got != 3 {
		t.Errorf("corrupted: %d, want 3", got)
	}
}

// The reading ends when the other side closes; Close of a server ends its
// peers; nothing is left running (TestMain checks goroutines).
func TestEnd(t *testing.T) {
	p, r := rawServer(t, Options{ReadDelay: delay})
	r.handshake()
	r.write(line(obj("String", `"bye"`)))
	r.c.Close()
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatal("the peer did not see the end")
	}
	if p.Err() != io.EOF {
		t.Errorf("Err %v, want EOF", p.Err())
	}
	wantMsgs(t, p, Msg{Type: "String", Data: []byte(`"bye"`)})

	srv, err := Listen("tcp", "127.0.0.1:0", Options{ReadDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peers, err := srv.WaitPeers(1, wait)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s while the peer slept before a read", d)
	}
	select {
	case <-peers[0].Done():
	default:
		t.Error("Close returned before its peer ended")
	}
}

// A relay passes bytes on both ways and the end of the stream too; what
// the raw side writes during the read delay arrives in one read behind it.
func TestRelay(t *testing.T) {
	srv, err := Listen("tcp", "127.0.0.1:0", Options{ReadDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relay := NewRelay(ln, "tcp", srv.Addr().String())
	defer relay.Close()
	c, err := net.Dial("tcp", relay.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := newRaw(t, c)
	r.binaryUp()
	peers, err := srv.WaitPeers(1, wait)
	if err != nil {
		t.Fatal(err)
	}
	p := peers[0]
	r.write(transition())
	r.write(frame(t, obj("Object", `{"lost":1}`))) // a write of its own, same read
	eventually(t, "rx switched", func() bool { return p.RxBinary() })
	r.write(frame(t, obj("Object", `{"kept":2}`)))
	wantMsgs(t, p, Msg{Type: "Object", Data: []byte(`{"kept":2}`), Binary: true})
	r.c.(*net.TCPConn).CloseWrite()
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatal("the end of the stream did not pass the relay")
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := r.r.ReadByte(); err != io.EOF {
		t.Errorf("the peer's end did not come back through the relay: %v", err)
	}
}
