// Package nodepeer emulates a Node.js Sockhop 2.1.0 peer, client or server,
// on a net.Conn, for tests of the Go library's send paths. Sockhop 2.1.0 is
// not on npm, so its receive side is reproduced here as PROTOCOL.md 3.1,
// 4.5, 5.4, 5.5, 7.2 and 14.1 describe it, defects included:
//
//   - One goroutine reads with a 64 KiB buffer (Node's socket read size),
//     after sleeping Options.ReadDelay before each read (a busy event loop),
//     so that everything the other side wrote meanwhile arrives in one read.
//   - While the receiving direction is in JSON mode, a read is appended to
//     the JSON buffer and every complete line in it is split off and parsed
//     before any of them is acted on. A SockhopBinaryModeTransition line
//     switches the parser to binary frames for the NEXT read only: bytes
//     after the line in the same read are still split as JSON lines (an
//     id-10 frame header holds a 0x0a, so each piece counts as corrupted,
//     Node's "Skipping corrupted data in buffer"), and whatever follows the
//     last 0x0a stays in the JSON buffer forever. Frames that share a read
//     with the transition line are lost (14.1).
//   - In binary mode a read is appended to the binary buffer and complete
//     frames ([u32le length][id 10..15][payload], PROTOCOL.md 4) are decoded;
//     one that fails to decode counts as corrupted and is skipped.
//   - The peer's own transmit side writes its transition line when the
//     reply to its handshake grants binary mode, but switches to binary
//     frames only once the current read has been handled (Node flips it in
//     the write's callback, an event-loop turn later): anything it writes
//     while handling the rest of that read - a pong, an echo - is a JSON
//     line after its transition line, as the reference does
//     (behaviour.jsonl#client-json-after-own-transition).
//
// The peer answers what 2.1.0 answers and nothing else: the other side's
// SockhopHandshake (with {"allow_binary_mode":...} in its current transmit
// mode), SockhopPing (a SockhopPong in its current transmit mode), and, with
// Options.Echo, requests (the application replying with what it got).
// Everything the application would see is recorded: Messages in arrival
// order, replies to the peer's own requests in Replies.
//
// Server accepts connections and runs a Peer for each; Relay relays
// connections to a target, e.g. as the TLS terminator a Node server needs.
//
// Not emulated: the reference's crashes (14.2), its handshake timer beyond
// swallowing a reply that comes after 3 s, pings of its own, and anything
// of compatibility mode.
package nodepeer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// LibraryVersion is the library_version the emulated peer announces.
const LibraryVersion = "2.1.0"

// ReadSize is the size of one socket read of a Node process.
const ReadSize = 64 << 10

// HandshakeTimeout is the reference's default handshake_timeout: a reply to
// the peer's own handshake that arrives later is swallowed (5.5).
const HandshakeTimeout = 3 * time.Second

// writeTimeout bounds one write: Node never blocks on a write, and a test
// must not hang on a side that stopped reading.
const writeTimeout = 10 * time.Second

// decodeLimit is the message size limit handed to wire's decoder: Node has
// none (14.3).
const decodeLimit = 1 << 40

// Options configure a Peer.
type Options struct {
	// ReadDelay is slept before each socket read, as by a Node event loop
	// busy for that long: what the other side writes meanwhile arrives in
	// one read.
	ReadDelay time.Duration
	// Echo answers every request at once with its own type and JSON data
	// (a request carrying bytes is answered with a Buffer of those bytes,
	// the only byte reply a Node application can make), in the peer's
	// current transmit mode.
	Echo bool
	// OnTxBinary, when set, runs on the reading goroutine right after the
	// peer's transmit side switched to binary: where a Node application's
	// 'binary_mode:tx' listener runs. It may call Send and Request.
	OnTxBinary func(p *Peer)
	// Hold, when set, keeps the peer from reading anything until it is
	// closed (a process still starting up): what the other side writes
	// meanwhile fills the socket buffers. The peer's own handshake is
	// written at once all the same.
	Hold <-chan struct{}
	// IgnorePings makes the peer answer no ping. No 2.x peer does that;
	// it stands for a peer that never proves it reads binary frames.
	IgnorePings bool
}

// Msg is one message the emulated application received, or one reply to a
// request the peer made.
type Msg struct {
	Type string
	// Data is the JSON text of the data, or the bytes when Bytes is set (a
	// raw Buffer, a typed buffer, or a JSON-mode Buffer decoded from
	// base64). Nil when a JSON line had no data.
	Data  []byte
	Bytes bool
	// Request: the sender waits for a reply; ID is then the request's id.
	// For a reply (Replies), ID is the callback id it answers.
	Request bool
	ID      string
	// Binary: it arrived as a binary frame.
	Binary bool
}

func (m Msg) String() string {
	kind := "plain"
	switch {
	case m.Request:
		kind = "request " + m.ID
	case m.ID != "":
		kind = "reply " + m.ID
	}
	mode := "json"
	if m.Binary {
		mode = "binary"
	}
	if m.Bytes {
		return fmt.Sprintf("%s %s %q (%d bytes, %s)", kind, mode, m.Type, len(m.Data), bytesPreview(m.Data))
	}
	return fmt.Sprintf("%s %s %q %s", kind, mode, m.Type, m.Data)
}

func bytesPreview(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%x...", b[:16])
	}
	return fmt.Sprintf("%x", b)
}

// Peer is one emulated Node connection. Its methods are safe for concurrent
// use.
type Peer struct {
	conn net.Conn
	o    Options

	closing   chan struct{}
	closeOnce sync.Once
	done      chan struct{}
	startOnce sync.Once
	started   chan struct{} // closed by Start

	// wmu orders writes and guards the transmit mode.
	wmu      sync.Mutex
	txBinary bool
	writeErr error

	// Read side, used by the reading goroutine only.
	rxBinary  bool
	jsonBuf   []byte
	binBuf    []byte
	hsID      string    // id of the peer's own handshake
	hsSent    time.Time // when it was written
	hsReplied bool      // the reply to it was acted on
	txPending bool      // the transition line was written; tx flips after this read

	// mu guards what tests read.
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change below
	msgs      []Msg
	replies   []Msg
	corrupted int
	jsonHeld  int
	rxState   bool
	txState   bool
	readErr   error
}

// New returns a Peer on conn; nothing is read or written until Start.
func New(conn net.Conn, o Options) *Peer {
	return &Peer{
		conn:    conn,
		o:       o,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		started: make(chan struct{}),
		changed: make(chan struct{}),
	}
}

// Dial connects to a Sockhop server as an emulated Node client and starts
// it.
func Dial(network, addr string, o Options) (*Peer, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	p := New(c, o)
	p.Start()
	return p, nil
}

// Start writes the peer's handshake line, as 2.1.0 does as soon as a
// connection is up (5.3), and starts the reading goroutine. Calling it
// again does nothing.
func (p *Peer) Start() {
	p.startOnce.Do(func() {
		close(p.started)
		p.hsID = wire.NewUUID()
		go p.run()
	})
}

// Conn returns the connection.
func (p *Peer) Conn() net.Conn { return p.conn }

// Done returns a channel closed once the reading goroutine ended (the other
// side closed the connection, a read failed, or Close).
func (p *Peer) Done() <-chan struct{} { return p.done }

// Err returns why the reading ended (io.EOF when the other side closed),
// or nil while it runs.
func (p *Peer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readErr
}

// Close closes the connection and waits for the reading goroutine.
func (p *Peer) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closing)
		err = p.conn.Close()
	})
	select {
	case <-p.started:
		<-p.done
	default:
	}
	return err
}

// Messages returns what the emulated application received so far, in
// arrival order.
func (p *Peer) Messages() []Msg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Msg(nil), p.msgs...)
}

// Replies returns the replies to the peer's own requests received so far.
func (p *Peer) Replies() []Msg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Msg(nil), p.replies...)
}

// Corrupted returns how many JSON lines or frames could not be decoded and
// were skipped (each an 'error' event of the reference).
func (p *Peer) Corrupted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.corrupted
}

// JSONBuffered returns how many bytes wait in the JSON buffer: after the
// switch to binary, the bytes stranded there for good.
func (p *Peer) JSONBuffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jsonHeld
}

// RxBinary and TxBinary report each direction's mode.
func (p *Peer) RxBinary() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rxState
}

// TxBinary reports whether the peer writes binary frames.
func (p *Peer) TxBinary() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.txState
}

// errEnded is returned by the waits when the reading ended first.
var errEnded = errors.New("nodepeer: the connection ended")

// WaitMessages waits until at least n messages were received and returns
// them all. On timeout, or when the reading ended with fewer, it returns
// those received with an error.
func (p *Peer) WaitMessages(n int, timeout time.Duration) ([]Msg, error) {
	var got []Msg
	err := p.wait(timeout, func() bool {
		got = append(got[:0], p.msgs...)
		return len(p.msgs) >= n
	})
	if err != nil {
		err = fmt.Errorf("nodepeer: %d of %d messages received: %w", len(got), n, err)
	}
	return got, err
}

// WaitReply waits for the reply to the peer's request id.
func (p *Peer) WaitReply(id string, timeout time.Duration) (Msg, error) {
	var got Msg
	err := p.wait(timeout, func() bool {
		for _, r := range p.replies {
			if r.ID == id {
				got = r
				return true
			}
		}
		return false
	})
	if err != nil {
		err = fmt.Errorf("nodepeer: no reply to request %s: %w", id, err)
	}
	return got, err
}

// Wait waits until cond, called with the peer's state locked, holds.
func (p *Peer) wait(timeout time.Duration, cond func() bool) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		ok := cond()
		ch := p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-p.done:
			p.mu.Lock()
			ok := cond()
			p.mu.Unlock()
			if ok {
				return nil
			}
			return errEnded
		case <-t.C:
			return fmt.Errorf("timed out after %s", timeout)
		}
	}
}

// notifyLocked wakes the waiters; p.mu held.
func (p *Peer) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Send writes a plain message in the current transmit mode, as the
// reference's send(): data []byte is bytes (a raw Buffer for type "Buffer",
// a typed buffer otherwise, which needs binary mode); anything else is
// JSON (json.RawMessage as is, other values marshalled).
func (p *Peer) Send(typ string, data any) error {
	m, err := appMessage(typ, data)
	if err != nil {
		return err
	}
	return p.write(&m, m.Bytes && m.Type != wire.TypeBuffer)
}

// Request writes a callback request with a fresh UUID v4 id, as send(value,
// callback) does, and returns the id; WaitReply waits for the answer.
func (p *Peer) Request(typ string, data any) (string, error) {
	m, err := appMessage(typ, data)
	if err != nil {
		return "", err
	}
	m.Kind, m.ID = wire.Request, wire.NewUUID()
	return m.ID, p.write(&m, m.Bytes && m.Type != wire.TypeBuffer)
}

func appMessage(typ string, data any) (wire.Message, error) {
	m := wire.Message{Type: typ}
	switch x := data.(type) {
	case json.RawMessage:
		m.Data = x
	case []byte:
		m.Data, m.Bytes = x, true
	default:
		b, err := wire.Marshal(data)
		if err != nil {
			return m, err
		}
		m.Data = b
	}
	return m, nil
}

// errTypedJSON is the reference's refusal to send a typed buffer in JSON mode.
var errTypedJSON = errors.New("nodepeer: a typed buffer needs binary mode (ERR_SEND_TYPED_BUFFER_NO_BINARY_MODE)")

// write writes m in the current transmit mode.
func (p *Peer) write(m *wire.Message, typed bool) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	var b []byte
	if p.txBinary {
		var err error
		if b, err = wire.AppendFrame(nil, m); err != nil {
			return err
		}
	} else {
		if typed {
			return errTypedJSON
		}
		b = wire.AppendJSONLine(nil, m, nil)
	}
	return p.writeLocked(b)
}

func (p *Peer) writeLocked(b []byte) error {
	_ = p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := p.conn.Write(b)
	if err != nil && p.writeErr == nil {
		p.writeErr = err
	}
	return err
}

// run is the reading goroutine.
func (p *Peer) run() {
	defer close(p.done)
	defer p.conn.Close() // Node ends its side when the other side ends (allowHalfOpen false)
	hs := wire.Message{Type: wire.TypeHandshake, Data: wire.MarshalHandshake(LibraryVersion, true), Kind: wire.Request, ID: p.hsID}
	p.hsSent = time.Now()
	_ = p.write(&hs, false)
	buf := make([]byte, ReadSize)
	if p.o.Hold != nil {
		select {
		case <-p.o.Hold:
		case <-p.closing:
			p.ended(net.ErrClosed)
			return
		}
	}
	var delay *time.Timer
	if p.o.ReadDelay > 0 {
		delay = time.NewTimer(p.o.ReadDelay)
		defer delay.Stop()
	}
	for {
		if delay != nil {
			delay.Reset(p.o.ReadDelay)
			select {
			case <-delay.C:
			case <-p.closing:
				p.ended(net.ErrClosed)
				return
			}
		}
		n, err := p.conn.Read(buf)
		if n > 0 {
			p.handleRead(buf[:n])
		}
		if err != nil {
			p.ended(err)
			return
		}
	}
}

func (p *Peer) ended(err error) {
	p.mu.Lock()
	p.readErr = err
	p.notifyLocked()
	p.mu.Unlock()
}

// handleRead handles one socket read the way 2.1.0 does.
func (p *Peer) handleRead(b []byte) {
	if !p.rxBinary {
		p.jsonBuf = append(p.jsonBuf, b...)
		// Every complete line of this read is split off and parsed before
		// any is acted on (a transition among them changes nothing for
		// the others).
		var parsed []wire.Message
		bad := 0
		for {
			i := bytes.IndexByte(p.jsonBuf, '\n')
			if i < 0 {
				break
			}
			if m, ok := parseLine(p.jsonBuf[:i]); ok {
				parsed = append(parsed, m)
			} else {
				bad++
			}
			p.jsonBuf = p.jsonBuf[i+1:]
		}
		p.jsonBuf = append([]byte(nil), p.jsonBuf...)
		p.addCorrupted(bad, len(p.jsonBuf))
		switchRx := false
		for i := range parsed {
			if p.handle(&parsed[i]) {
				switchRx = true
			}
		}
		if switchRx {
			// From the next read on; the JSON buffer's tail is never looked
			// at again.
			p.rxBinary = true
			p.mu.Lock()
			p.rxState = true
			p.notifyLocked()
			p.mu.Unlock()
		}
	} else {
		p.binBuf = append(p.binBuf, b...)
		var frames []wire.Message
		bad := 0
		for len(p.binBuf) >= 5 {
			size := 5 + int(binary.LittleEndian.Uint32(p.binBuf))
			if len(p.binBuf) < size {
				break
			}
			if m, ok := parseFrame(p.binBuf[:size]); ok {
				frames = append(frames, m)
			} else {
				bad++
			}
			p.binBuf = p.binBuf[size:]
		}
		p.binBuf = append([]byte(nil), p.binBuf...)
		p.addCorrupted(bad, -1)
		for i := range frames {
			p.handle(&frames[i])
		}
	}
	if p.txPending {
		// The transition line's write has completed: frames from now on.
		p.txPending = false
		p.wmu.Lock()
		p.txBinary = true
		p.wmu.Unlock()
		p.mu.Lock()
		p.txState = true
		p.notifyLocked()
		p.mu.Unlock()
		if p.o.OnTxBinary != nil {
			p.o.OnTxBinary(p)
		}
	}
}

func (p *Peer) addCorrupted(n, jsonHeld int) {
	p.mu.Lock()
	p.corrupted += n
	if jsonHeld >= 0 {
		p.jsonHeld = jsonHeld
	}
	p.notifyLocked()
	p.mu.Unlock()
}

// parseLine decodes one JSON line (without its terminator). A line that is
// not a JSON object with a string type is corrupted. The result owns its
// memory.
func parseLine(line []byte) (wire.Message, bool) {
	in := make([]byte, 0, len(line)+1)
	in = append(append(in, line...), '\n')
	m, err := wire.NewDecoder(bytes.NewReader(in), nil, decodeLimit).Next()
	if err != nil || !m.HasType {
		return wire.Message{}, false
	}
	return own(m), true
}

// parseFrame decodes one complete frame, header included.
func parseFrame(frame []byte) (wire.Message, bool) {
	d := wire.NewDecoder(bytes.NewReader(frame), nil, decodeLimit)
	d.SwitchToBinary()
	m, err := d.Next()
	if err != nil {
		return wire.Message{}, false
	}
	return own(m), true
}

func own(m wire.Message) wire.Message {
	if m.Data != nil {
		m.Data = append([]byte{}, m.Data...)
	}
	if m.RawID != nil {
		m.RawID = append([]byte(nil), m.RawID...)
	}
	m.Frame, m.Owned = nil, true
	return m
}

// handle acts on one decoded message as 2.1.0 does (3.5, 4.5) and reports
// whether it was a transition line.
func (p *Peer) handle(m *wire.Message) (transition bool) {
	switch m.Type {
	case wire.TypeHandshake:
		p.answerHandshake(m)
		return false
	case wire.TypeTransition:
		return true
	case wire.TypePing:
		if !p.o.IgnorePings {
			pong := wire.Message{Type: wire.TypePong, Data: wire.MarshalPong(m.Data, time.Now())}
			_ = p.write(&pong, false)
		}
		return false
	case wire.TypePong:
		return false
	}
	switch m.Kind {
	case wire.Response:
		if m.ID == p.hsID && !p.hsReplied {
			p.hsReplied = true
			if time.Since(p.hsSent) < HandshakeTimeout && !m.Bytes && truthy(field(m.Data, "allow_binary_mode")) {
				p.wmu.Lock()
				if !p.txBinary && !p.txPending {
					line := wire.AppendJSONLine(nil, &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}, nil)
					_ = p.writeLocked(line)
					p.txPending = true
				}
				p.wmu.Unlock()
			}
			return false
		}
		p.record(m, true)
	case wire.Request:
		p.record(m, false)
		if p.o.Echo {
			ans := wire.Message{Type: m.Type, Data: m.Data, Bytes: m.Bytes, Kind: wire.Response, ID: m.ID, RawID: m.RawID}
			if ans.Bytes {
				ans.Type = wire.TypeBuffer
			}
			_ = p.write(&ans, false)
		}
	default:
		p.record(m, false)
	}
	return false
}

func (p *Peer) record(m *wire.Message, reply bool) {
	r := Msg{Type: m.Type, Data: m.Data, Bytes: m.Bytes, Request: m.Kind == wire.Request, ID: m.ID, Binary: m.Binary}
	p.mu.Lock()
	if reply {
		p.replies = append(p.replies, r)
	} else {
		p.msgs = append(p.msgs, r)
	}
	p.notifyLocked()
	p.mu.Unlock()
}

// answerHandshake writes the reply to the other side's handshake in the
// current transmit mode: allow_binary_mode = request_binary_mode && true,
// as JavaScript's && gives it (a missing key gives "data":{}), with the
// request's id as callback_id (none when it had no id: then the other side
// sees an ordinary Object message).
func (p *Peer) answerHandshake(m *wire.Message) {
	data := []byte("{}")
	var req json.RawMessage
	if !m.Bytes {
		req = field(m.Data, "request_binary_mode")
	}
	if req != nil {
		v := []byte("true")
		if !truthy(req) {
			v = req
		}
		data = append(append([]byte(`{"allow_binary_mode":`), v...), '}')
	}
	ans := wire.Message{Type: "Object", Data: data}
	if m.Kind == wire.Request {
		ans.Kind, ans.ID, ans.RawID = wire.Response, m.ID, m.RawID
	}
	_ = p.write(&ans, false)
}

// field returns the compact JSON text of key in the object data, or nil.
func field(data []byte, key string) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return nil
	}
	v, ok := obj[key]
	if !ok {
		return nil
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return nil
	}
	return b.Bytes()
}

// truthy reports whether JSON text is truthy in JavaScript.
func truthy(v json.RawMessage) bool {
	switch s := string(v); s {
	case "", "null", "false", `""`:
		return false
	default:
		var f float64
		if json.Unmarshal(v, &f) == nil {
			return f != 0
		}
		return true
	}
}
