package sockhop

// The harness behind TestTranscripts (transcript_test.go). It loads one
// recorded conversation from shared/vectors/transcripts, puts the Go library
// in the place of one side and plays the other side's recorded bytes from a
// raw socket:
//
//   - The scripted peer writes its recorded stream message by message, in
//     lockstep with the recorded chunk order: the messages that start in one
//     recorded chunk are written together, once the Go side has written at
//     least as many messages as it had before that chunk in the recording.
//   - Callback ids (and ping ids) the Go side generates replace the recorded
//     ones in the peer's bytes: recorded ids of the replaced side map to the
//     live ids in order of first appearance.
//   - What the Go side wrote is captured, cut into messages with
//     internal/wire and compared with the replaced side's recorded stream,
//     byte for byte after overwriting the masked ranges (uuid, iso_date).
//   - What the Go application saw (messages, request results, handshake
//     outcomes, binary switches, disconnects, errors) is compared with the
//     replaced side's recorded events.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

var (
	trUUIDRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	trDateRe = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`)
)

const (
	// trWait bounds every wait for the other side.
	trWait = 3 * time.Second
	// trHandshakeTimeout replaces a recorded handshake_timeout (300 or
	// 500 ms): only its expiry matters in those scenarios, not its length.
	trHandshakeTimeout = 150 * time.Millisecond
)

// The recording, as stored (vectors/README.md, "transcripts/*.json").

type trTranscript struct {
	Scenario    string              `json:"scenario"`
	Description string              `json:"description"`
	Client      trSideInfo          `json:"client"`
	Server      trSideInfo          `json:"server"`
	Chunks      []trChunk           `json:"chunks"`
	Streams     map[string]trStream `json:"streams"`
	Events      []trEvent           `json:"events"`
}

type trSideInfo struct {
	Library string                     `json:"library"`
	Options map[string]json.RawMessage `json:"options"`
}

type trChunk struct {
	Conn int    `json:"conn"`
	Dir  string `json:"dir"`
	Hex  string `json:"hex"`
	EOF  bool   `json:"eof"`
}

type trStream struct {
	Hex      string        `json:"hex"`
	Masks    []trMaskRange `json:"masks"`
	Messages []struct {
		Offset int `json:"offset"`
		Length int `json:"length"`
	} `json:"messages"`
}

type trMaskRange struct {
	Offset int    `json:"offset"`
	Length int    `json:"length"`
	Kind   string `json:"kind"`
}

type trEvent struct {
	Side  string            `json:"side"`
	Event string            `json:"event"`
	Args  []json.RawMessage `json:"args"`
}

// trTranscriptDir finds shared/vectors/transcripts: $SOCKHOP_VECTORS, or the
// first shared/vectors found walking up from the package directory.
func trTranscriptDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SOCKHOP_VECTORS"); d != "" {
		return filepath.Join(d, "transcripts")
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		cand := filepath.Join(dir, "shared", "vectors", "transcripts")
		if fi, err := os.Stat(cand); err == nil && fi.IsDir() {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("transcripts not found: no shared/vectors/transcripts above the package directory and SOCKHOP_VECTORS unset")
		}
		dir = parent
	}
}

func trLoad(t *testing.T, path string) *trTranscript {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tr trTranscript
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &tr
}

func (tr *trTranscript) side(role string) trSideInfo {
	if role == "client" {
		return tr.Client
	}
	return tr.Server
}

func (tr *trTranscript) conns() int {
	n := 0
	for _, c := range tr.Chunks {
		if c.Conn+1 > n {
			n = c.Conn + 1
		}
	}
	return n
}

// trConnRec is one recorded TCP connection seen from the replay: the stream
// the Go side must write and the groups of messages the peer writes.
type trConnRec struct {
	goDir, peerDir string
	goBytes        []byte
	goMasks        []trMaskRange
	goEnds         []int // end offset of each recorded message of the Go side
	groups         []trGroup
	// goGen: recorded ids the replaced side generated, in order of first
	// appearance; peerGen: the ids the peer generated.
	goGen      []string
	peerGen    map[string]bool
	peerCloses bool // the peer's direction ended first in the recording
}

// trGroup is what the peer writes at once: the messages that start in one
// recorded chunk, once the Go side has written gate messages.
type trGroup struct {
	gate  int
	first int // index of its first message in the peer stream
	n     int
	data  []byte
}

func trRecordConn(tr *trTranscript, conn int, role string) (*trConnRec, error) {
	rec := &trConnRec{goDir: "c2s", peerDir: "s2c", peerGen: map[string]bool{}}
	if role == "server" {
		rec.goDir, rec.peerDir = "s2c", "c2s"
	}
	stream := func(dir string) (trStream, error) {
		if s, ok := tr.Streams[fmt.Sprintf("conn%d:%s", conn, dir)]; ok {
			return s, nil
		}
		if s, ok := tr.Streams[dir]; ok && conn == 0 {
			return s, nil
		}
		return trStream{}, fmt.Errorf("no stream %s for conn %d", dir, conn)
	}
	gs, err := stream(rec.goDir)
	if err != nil {
		return nil, err
	}
	ps, err := stream(rec.peerDir)
	if err != nil {
		return nil, err
	}
	if rec.goBytes, err = hex.DecodeString(gs.Hex); err != nil {
		return nil, err
	}
	peerBytes, err := hex.DecodeString(ps.Hex)
	if err != nil {
		return nil, err
	}
	rec.goMasks = gs.Masks

	// The chunks of this connection, as byte ranges of their direction.
	type pos struct {
		dir        string
		start, end int
		eof        bool
	}
	var chunks []pos
	off := map[string]int{}
	var joined = map[string][]byte{}
	for _, c := range tr.Chunks {
		if c.Conn != conn {
			continue
		}
		if c.EOF {
			chunks = append(chunks, pos{dir: c.Dir, eof: true})
			continue
		}
		b, err := hex.DecodeString(c.Hex)
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, pos{dir: c.Dir, start: off[c.Dir], end: off[c.Dir] + len(b)})
		off[c.Dir] += len(b)
		joined[c.Dir] = append(joined[c.Dir], b...)
	}
	if !bytes.Equal(joined[rec.goDir], rec.goBytes) || !bytes.Equal(joined[rec.peerDir], peerBytes) {
		return nil, fmt.Errorf("conn %d: chunks do not add up to the streams", conn)
	}
	chunkOf := func(dir string, at int) int {
		for i, c := range chunks {
			if c.dir == dir && !c.eof && at >= c.start && at < c.end {
				return i
			}
		}
		return len(chunks)
	}
	goBefore := func(k int) int { // bytes of the Go direction relayed before chunk k
		n := 0
		for _, c := range chunks[:k] {
			if c.dir == rec.goDir && !c.eof {
				n = c.end
			}
		}
		return n
	}

	end := 0
	for _, m := range gs.Messages {
		if m.Offset != end {
			return nil, fmt.Errorf("conn %d: recorded %s messages do not tile the stream", conn, rec.goDir)
		}
		end = m.Offset + m.Length
		rec.goEnds = append(rec.goEnds, end)
	}
	if end != len(rec.goBytes) {
		return nil, fmt.Errorf("conn %d: recorded %s messages do not cover the stream", conn, rec.goDir)
	}

	lastChunk, end := -1, 0
	for i, m := range ps.Messages {
		if m.Offset != end {
			return nil, fmt.Errorf("conn %d: recorded %s messages do not tile the stream", conn, rec.peerDir)
		}
		end = m.Offset + m.Length
		k := chunkOf(rec.peerDir, m.Offset)
		if k == lastChunk {
			g := &rec.groups[len(rec.groups)-1]
			g.n++
			g.data = append(g.data, peerBytes[m.Offset:end]...)
			continue
		}
		gate, before := 0, goBefore(k)
		for _, e := range rec.goEnds {
			if e <= before {
				gate++
			}
		}
		rec.groups = append(rec.groups, trGroup{gate: gate, first: i, n: 1, data: append([]byte(nil), peerBytes[m.Offset:end]...)})
		lastChunk = k
	}
	if end != len(peerBytes) {
		return nil, fmt.Errorf("conn %d: recorded %s messages do not cover the stream", conn, rec.peerDir)
	}

	goEOF, peerEOF := len(chunks), len(chunks)
	for i, c := range chunks {
		if c.eof && c.dir == rec.goDir && goEOF == len(chunks) {
			goEOF = i
		}
		if c.eof && c.dir == rec.peerDir && peerEOF == len(chunks) {
			peerEOF = i
		}
	}
	rec.peerCloses = peerEOF < goEOF

	// Who generated each id: the side whose stream carried it first.
	first := map[string]int{}
	firstDir := map[string]string{}
	for _, s := range []struct {
		dir string
		b   []byte
	}{{rec.goDir, rec.goBytes}, {rec.peerDir, peerBytes}} {
		for _, ix := range trUUIDRe.FindAllIndex(s.b, -1) {
			id := string(s.b[ix[0]:ix[1]])
			k := chunkOf(s.dir, ix[1]-1)
			if at, ok := first[id]; !ok || k < at {
				first[id], firstDir[id] = k, s.dir
			}
		}
	}
	seen := map[string]bool{}
	for _, ix := range trUUIDRe.FindAllIndex(rec.goBytes, -1) {
		id := string(rec.goBytes[ix[0]:ix[1]])
		if firstDir[id] == rec.goDir && !seen[id] {
			seen[id] = true
			rec.goGen = append(rec.goGen, id)
		}
	}
	for id, dir := range firstDir {
		if dir == rec.peerDir {
			rec.peerGen[id] = true
		}
	}
	return rec, nil
}

// trCapture records what the Go side wrote on one connection and counts
// its messages as they arrive.
type trCapture struct {
	term []byte
	mu   sync.Mutex
	raw  []byte
	n    int
	eof  bool
}

type trTee struct {
	r io.Reader
	c *trCapture
}

func (t trTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.c.mu.Lock()
	t.c.raw = append(t.c.raw, p[:n]...)
	t.c.mu.Unlock()
	return n, err
}

func (c *trCapture) run(nc net.Conn) {
	tee := trTee{nc, c}
	dec := wire.NewDecoder(tee, c.term, 0)
	for {
		_, err := dec.Next()
		var de *wire.DecodeError
		if err != nil && !errors.As(err, &de) {
			break
		}
		c.mu.Lock()
		c.n++ // an undecodable message counts too: the comparison reports it
		c.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, tee) // keep every byte for the comparison
	c.mu.Lock()
	c.eof = true
	c.mu.Unlock()
}

func (c *trCapture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *trCapture) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eof
}

func (c *trCapture) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.raw...)
}

// liveIDs returns the ids the Go side generated so far, in order of first
// appearance: every uuid in its stream except those the peer sent it.
func (c *trCapture) liveIDs(peerGen map[string]bool) []string {
	raw := c.bytes()
	var ids []string
	seen := map[string]bool{}
	for _, m := range trUUIDRe.FindAll(raw, -1) {
		id := string(m)
		if !peerGen[id] && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// trGot is one message the Go application received, or one reply a
// Request returned.
type trGot struct {
	typ     string
	request bool
	isBytes bool
	data    []byte
}

func (g trGot) String() string {
	d := string(g.data)
	if g.isBytes {
		d = "bytes:" + hex.EncodeToString(g.data)
	}
	req := ""
	if g.request {
		req = " (request)"
	}
	return fmt.Sprintf("%s %s%s", g.typ, d, req)
}

// trWant is one message the Go application must receive (or one reply a
// Request must return): from a recorded event, or declared by a script.
type trWant struct {
	typ     string
	request bool
	hexData *string         // a Buffer: {"$buffer_hex": ...}
	data    json.RawMessage // otherwise the JSON value
	note    string
}

func (w trWant) String() string {
	d := string(w.data)
	if w.hexData != nil {
		d = "bytes:" + *w.hexData
	}
	req := ""
	if w.request {
		req = " (request)"
	}
	return fmt.Sprintf("%s %s%s", w.typ, d, req)
}

func (w trWant) matches(g trGot) bool {
	if w.typ != g.typ || w.request != g.request {
		return false
	}
	if w.hexData != nil {
		return g.isBytes && hex.EncodeToString(g.data) == *w.hexData
	}
	return !g.isBytes && trJSONEqual(w.data, g.data)
}

func trJSONEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// trWantFromArgs reads a recorded (data, meta) pair.
func trWantFromArgs(args []json.RawMessage) (trWant, error) {
	if len(args) < 2 {
		return trWant{}, fmt.Errorf("event has %d args, want (data, meta)", len(args))
	}
	var meta struct {
		Type     string `json:"type"`
		Callback string `json:"callback"`
	}
	if err := json.Unmarshal(args[1], &meta); err != nil {
		return trWant{}, err
	}
	w := trWant{typ: meta.Type, request: meta.Callback != "", data: args[0]}
	var buf struct {
		Hex *string `json:"$buffer_hex"`
	}
	if json.Unmarshal(args[0], &buf) == nil && buf.Hex != nil {
		w.hexData = buf.Hex
	}
	return w, nil
}

// trReplay runs one side of one transcript.
type trReplay struct {
	t    *testing.T
	tr   *trTranscript
	role string // the side the Go library plays: "client" or "server"
	recs []*trConnRec
	tx   string // the Go side's transmit terminator
	ctx  context.Context

	// Set by scripts.
	replies map[string]func(*Message) any // answers to requests, by type
	// messageLevel, when set, is why the Go side's stream is compared
	// message by message instead of byte for byte.
	messageLevel string
	// extraPings, when set, is why pings beyond the recorded ones may follow
	// the recorded stream.
	extraPings string
	// pingOrder, when set, is why a byte-exact mismatch may be accepted
	// when the messages match with pings and pongs in another order.
	pingOrder string
	// relistenGap: how long the scripted server stays away between two
	// recorded connections (client role).
	relistenGap time.Duration

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu        sync.Mutex
	caps      []*trCapture
	written   []int // groups written per connection
	peerConns []net.Conn
	peerDone  []chan struct{}
	closeOK   []chan struct{}
	closeOnce []sync.Once
	ln        net.Listener
	addr      string
	nextConn  int
	closers   []func() error

	got       []trGot
	extras    []trWant
	replied   map[string]int
	results   []trGot
	hs        []string
	txOn      int
	rxOn      int
	discs     []error
	errs      []error
	reconnErr int
}

func newTrReplay(t *testing.T, tr *trTranscript, role string) *trReplay {
	r := &trReplay{
		t:           t,
		tr:          tr,
		role:        role,
		replies:     map[string]func(*Message) any{},
		replied:     map[string]int{},
		stop:        make(chan struct{}),
		relistenGap: 150 * time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	r.ctx = ctx
	n := tr.conns()
	for i := 0; i < n; i++ {
		rec, err := trRecordConn(tr, i, role)
		if err != nil {
			t.Fatalf("reading the recording: %v", err)
		}
		r.recs = append(r.recs, rec)
	}
	r.caps = make([]*trCapture, n)
	r.written = make([]int, n)
	r.peerConns = make([]net.Conn, n)
	r.closeOnce = make([]sync.Once, n)
	for i := 0; i < n; i++ {
		r.peerDone = append(r.peerDone, make(chan struct{}))
		r.closeOK = append(r.closeOK, make(chan struct{}))
	}
	r.tx, _ = r.terminators()
	if role == "client" {
		// The scripted server: accept each recorded connection in turn.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.ln, r.addr = ln, ln.Addr().String()
		r.wg.Add(1)
		go r.acceptLoop(ln)
	}
	return r
}

// terminators returns the Go side's tx and rx terminators from the
// recorded options: a string for both, or an [rx, tx] pair (3.1).
func (r *trReplay) terminators() (tx, rx string) {
	tx, rx = "\n", "\n"
	raw, ok := r.tr.side(r.role).Options["terminator"]
	if !ok {
		return
	}
	var s string
	var pair []string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, s
	}
	if json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		return pair[1], pair[0]
	}
	return
}

// connOptions maps the replaced side's recorded options. The proof of the
// switch to binary mode is off: the peers announce "2.1.0", but the
// scripted peer only replays what the recorded one wrote, so it answers
// no probe ping, and the probes would be bytes the recording does not
// have (the proof is tested against an emulated Node receiver instead).
func (r *trReplay) connOptions() ConnOptions {
	o := ConnOptions{TransitionProofTimeout: -1}
	opts := r.tr.side(r.role).Options
	var b bool
	if raw, ok := opts["compatibility_mode"]; ok && json.Unmarshal(raw, &b) == nil && b {
		o.CompatibilityMode = true
	}
	if raw, ok := opts["allow_binary_mode"]; ok && json.Unmarshal(raw, &b) == nil && !b {
		o.NoBinary = true
	}
	if _, ok := opts["handshake_timeout"]; ok {
		o.HandshakeTimeout = trHandshakeTimeout
	}
	tx, rx := r.terminators()
	o.Terminator, o.RxTerminator = tx, rx
	return o
}

// newClient creates the Go client in the recorded client's place; mod may
// adjust the options. It is closed at the end of the replay.
func (r *trReplay) newClient(mod func(*ClientOptions)) *Client {
	r.t.Helper()
	o := ClientOptions{Addr: r.addr, ConnectTimeout: trWait, ConnOptions: r.connOptions()}
	if mod != nil {
		mod(&o)
	}
	o.OnHandshake = func(_ *Client, ok bool, err error) { r.onHandshake(ok, err) }
	o.OnBinaryMode = func(_ *Client, rx, tx bool) { r.onBinary(rx, tx) }
	o.OnDisconnect = func(_ *Client, err error) { r.note(func() { r.discs = append(r.discs, err) }) }
	o.OnError = func(_ *Client, err error) { r.note(func() { r.errs = append(r.errs, err) }) }
	o.OnReconnect = func(*Client, int, error, time.Duration) { r.note(func() { r.reconnErr++ }) }
	c := NewClient(o)
	c.HandleDefault(r.handle)
	r.mu.Lock()
	r.closers = append(r.closers, c.Close)
	r.mu.Unlock()
	return c
}

// newServer creates a Go server in the recorded server's place and dials
// it from the scripted client for the next recorded connection.
func (r *trReplay) newServer(mod func(*ServerOptions)) *Server {
	r.t.Helper()
	o := ServerOptions{Addr: "127.0.0.1:0", ConnOptions: r.connOptions()}
	if mod != nil {
		mod(&o)
	}
	o.OnHandshake = func(_ *Session, ok bool, err error) { r.onHandshake(ok, err) }
	o.OnBinaryMode = func(_ *Session, rx, tx bool) { r.onBinary(rx, tx) }
	o.OnSessionEnd = func(_ *Session, err error) { r.note(func() { r.discs = append(r.discs, err) }) }
	o.OnError = func(_ *Session, err error) { r.note(func() { r.errs = append(r.errs, err) }) }
	s := NewServer(o)
	s.HandleDefault(r.handle)
	r.mu.Lock()
	r.closers = append(r.closers, s.Close)
	r.mu.Unlock()
	if err := s.Listen(); err != nil {
		r.t.Fatalf("Listen: %v", err)
	}
	r.addr = s.Addr().String()
	i := r.nextConn
	if i >= len(r.recs) {
		r.t.Fatalf("the recording has %d connections; no peer for another server", len(r.recs))
	}
	r.nextConn++
	nc, err := net.DialTimeout("tcp", r.addr, trWait)
	if err != nil {
		r.t.Fatalf("scripted client: %v", err)
	}
	r.startPeer(i, nc)
	return s
}

func (r *trReplay) note(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
}

func (r *trReplay) onHandshake(ok bool, err error) {
	s := "true"
	if !ok {
		s = "false " + trCode(err)
	}
	r.note(func() { r.hs = append(r.hs, s) })
}

func (r *trReplay) onBinary(rx, tx bool) {
	r.note(func() {
		if rx {
			r.rxOn++
		}
		if tx {
			r.txOn++
		}
	})
}

func trCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// handle is the Go application: it records every message and answers
// requests with the script's reply for that type.
func (r *trReplay) handle(ctx context.Context, m *Message) error {
	g := trGot{typ: m.Type, request: m.IsRequest(), isBytes: m.IsBytes(), data: append([]byte(nil), m.JSON()...)}
	if m.IsBytes() {
		g.data = append([]byte(nil), m.Bytes()...)
	}
	r.note(func() { r.got = append(r.got, g) })
	if !m.IsRequest() {
		return nil
	}
	r.mu.Lock()
	reply := r.replies[m.Type]
	r.mu.Unlock()
	if reply == nil {
		return nil // the recorded application did not answer either
	}
	if err := m.Reply(ctx, reply(m)); err != nil {
		r.t.Errorf("replying to %s: %v", g, err)
	}
	r.note(func() { r.replied[m.Type]++ })
	return nil
}

// reply sets the answer the application gives to requests of type typ.
func (r *trReplay) reply(typ string, f func(*Message) any) {
	r.note(func() { r.replies[typ] = f })
}

// result records what a Request returned (the recording's
// callback-invoked).
func (r *trReplay) result(what string, m *Message, err error) {
	r.t.Helper()
	if err != nil {
		r.t.Errorf("%s: %v", what, err)
		return
	}
	g := trGot{typ: m.Type, isBytes: m.IsBytes(), data: append([]byte(nil), m.JSON()...)}
	if m.IsBytes() {
		g.data = append([]byte(nil), m.Bytes()...)
	}
	r.note(func() { r.results = append(r.results, g) })
}

// expectExtra declares a message the Go application receives although the
// recorded application did not, with the reason.
func (r *trReplay) expectExtra(typ string, request bool, data, note string) {
	r.extras = append(r.extras, trWant{typ: typ, request: request, data: json.RawMessage(data), note: note})
}

// until waits for cond in the test goroutine, failing the test after trWait.
func (r *trReplay) until(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(trWait)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %s waiting until %s\n%s", trWait, what, r.state())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitBG waits for cond in a peer goroutine: false after d, or at once
// when the replay is being torn down.
func (r *trReplay) waitBG(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-r.stop:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

func (r *trReplay) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// atLeast returns a condition: f() >= n, with f called under r.mu.
func (r *trReplay) atLeast(n int, f func() int) func() bool {
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return f() >= n
	}
}

func (r *trReplay) waitRecv(typ string, n int) {
	r.t.Helper()
	r.until(fmt.Sprintf("the Go application received %d %q message(s)", n, typ), r.atLeast(n, func() int {
		k := 0
		for _, g := range r.got {
			if g.typ == typ {
				k++
			}
		}
		return k
	}))
}

func (r *trReplay) waitReplied(typ string, n int) {
	r.t.Helper()
	r.until(fmt.Sprintf("the Go application answered %d %q request(s)", n, typ), r.atLeast(n, func() int { return r.replied[typ] }))
}

func (r *trReplay) waitHandshakes(n int) {
	r.t.Helper()
	r.until(fmt.Sprintf("%d handshake outcome(s) were reported", n), r.atLeast(n, func() int { return len(r.hs) }))
}

// waitRxBinary waits until n receive directions switched to binary mode
// (the peer's transition line was handled).
func (r *trReplay) waitRxBinary(n int) {
	r.t.Helper()
	r.until(fmt.Sprintf("%d receive direction(s) switched to binary mode", n), r.atLeast(n, func() int { return r.rxOn }))
}

func (r *trReplay) waitDisconnects(n int) []error {
	r.t.Helper()
	r.until(fmt.Sprintf("%d disconnect(s) were reported", n), r.atLeast(n, func() int { return len(r.discs) }))
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.discs...)
}

// waitGo waits until the peer has read n messages from the Go side on
// recorded connection i.
func (r *trReplay) waitGo(i, n int) {
	r.t.Helper()
	r.until(fmt.Sprintf("the Go side wrote %d message(s) on conn%d", n, i), func() bool {
		r.mu.Lock()
		c := r.caps[i]
		r.mu.Unlock()
		return c != nil && c.count() >= n
	})
}

// waitPeerWritten waits until the peer has written its whole recorded
// stream on connection i.
func (r *trReplay) waitPeerWritten(i int) {
	r.t.Helper()
	r.until(fmt.Sprintf("the peer wrote all %d recorded groups on conn%d", len(r.recs[i].groups), i), r.atLeast(len(r.recs[i].groups), func() int { return r.written[i] }))
}

// letPeerClose lets the peer end connection i (when the recording has the
// peer end it first); the end of the script lets every peer close.
func (r *trReplay) letPeerClose(i int) {
	r.closeOnce[i].Do(func() { close(r.closeOK[i]) })
}

// session returns the Go server's live session (the last one).
func (r *trReplay) session(s *Server) *Session {
	r.t.Helper()
	r.until("the Go server has a session", func() bool { return len(s.Sessions()) > 0 })
	ss := s.Sessions()
	return ss[len(ss)-1]
}

func (r *trReplay) acceptLoop(ln net.Listener) {
	defer r.wg.Done()
	for i := range r.recs {
		if i > 0 {
			// The recorded server went away; it comes back after a while.
			select {
			case <-r.peerDone[i-1]:
			case <-r.stop:
				return
			}
			select {
			case <-time.After(r.relistenGap):
			case <-r.stop:
				return
			}
			var err error
			if ln, err = net.Listen("tcp", r.addr); err != nil {
				r.t.Errorf("scripted server: listening again on %s: %v", r.addr, err)
				return
			}
			r.mu.Lock()
			r.ln = ln
			r.mu.Unlock()
		}
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		nc, err := ln.Accept()
		// The recording's relay stops listening too: reconnects are refused
		// until the next connection is due.
		_ = ln.Close()
		if err != nil {
			if !r.stopped() {
				r.t.Errorf("scripted server: the Go client did not open recorded connection %d: %v", i, err)
			}
			return
		}
		r.startPeer(i, nc)
	}
}

func (r *trReplay) startPeer(i int, nc net.Conn) {
	cp := &trCapture{term: []byte(r.tx)}
	r.mu.Lock()
	r.caps[i] = cp
	r.peerConns[i] = nc
	r.mu.Unlock()
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		cp.run(nc)
	}()
	go func() {
		defer r.wg.Done()
		defer close(r.peerDone[i])
		r.play(i, nc, cp)
	}()
}

// play writes the peer's recorded stream in lockstep with the Go side, then
// ends the connection the way the recording did.
func (r *trReplay) play(i int, nc net.Conn, cp *trCapture) {
	rec := r.recs[i]
	defer nc.Close()
	for gi, g := range rec.groups {
		if !r.waitBG(trWait, func() bool { return cp.count() >= g.gate }) {
			if !r.stopped() {
				r.t.Errorf("conn%d: the peer's recorded message %d is due after the Go side's message %d, but the Go side wrote only %d in %s:\n%s",
					i, g.first+1, g.gate, cp.count(), trWait, trRender(cp.bytes(), []byte(r.tx)))
			}
			return
		}
		data, err := r.substitute(rec, cp, g.data)
		if err != nil {
			r.t.Errorf("conn%d: peer message %d: %v", i, g.first+1, err)
			return
		}
		if _, err := nc.Write(data); err != nil {
			if !r.stopped() {
				r.t.Errorf("conn%d: writing the peer's message %d: %v", i, g.first+1, err)
			}
			return
		}
		r.note(func() { r.written[i] = gi + 1 })
	}
	if rec.peerCloses {
		select {
		case <-r.closeOK[i]:
		case <-r.stop:
			return
		}
		if !r.waitBG(trWait, func() bool { return cp.count() >= len(rec.goEnds) }) && !r.stopped() {
			r.t.Errorf("conn%d: the Go side wrote %d messages, the recorded side %d, before the peer closed", i, cp.count(), len(rec.goEnds))
		}
		_ = nc.(*net.TCPConn).CloseWrite()
	}
	if !r.waitBG(10*time.Second, cp.closed) && !r.stopped() {
		r.t.Errorf("conn%d: the Go side did not close the connection", i)
	}
}

// substitute puts the live ids in place of the recorded ids of the Go side.
func (r *trReplay) substitute(rec *trConnRec, cp *trCapture, data []byte) ([]byte, error) {
	out := append([]byte(nil), data...)
	var live []string
	for _, ix := range trUUIDRe.FindAllIndex(data, -1) {
		id := string(data[ix[0]:ix[1]])
		k := -1
		for j, g := range rec.goGen {
			if g == id {
				k = j
			}
		}
		if k < 0 {
			continue // the peer's own id, or one it made up
		}
		if live == nil {
			live = cp.liveIDs(rec.peerGen)
		}
		if k >= len(live) {
			return nil, fmt.Errorf("it quotes the Go side's id number %d (recorded %s), but the Go side has written only %d ids so far", k+1, id, len(live))
		}
		copy(out[ix[0]:ix[1]], live[k])
	}
	return out, nil
}

// state describes the replay for failure messages.
func (r *trReplay) state() string {
	var b strings.Builder
	r.mu.Lock()
	fmt.Fprintf(&b, "  Go application received: %v\n  request results: %v\n  handshakes: %v, disconnects: %v, errors: %v\n", r.got, r.results, r.hs, r.discs, r.errs)
	caps := append([]*trCapture(nil), r.caps...)
	written := append([]int(nil), r.written...)
	r.mu.Unlock()
	for i, cp := range caps {
		if cp == nil {
			fmt.Fprintf(&b, "  conn%d: not opened\n", i)
			continue
		}
		fmt.Fprintf(&b, "  conn%d: peer wrote %d of %d groups; Go side wrote:\n%s", i, written[i], len(r.recs[i].groups), trRender(cp.bytes(), []byte(r.tx)))
	}
	return b.String()
}

// end finishes a script that returned: the peers may close, every
// connection ends, the Go side is closed; then everything is compared.
func (r *trReplay) end() {
	r.t.Helper()
	for i := range r.recs {
		r.letPeerClose(i)
	}
	for i := range r.recs {
		select {
		case <-r.peerDone[i]:
		case <-time.After(10 * time.Second):
			r.t.Fatalf("conn%d did not end\n%s", i, r.state())
		}
	}
	r.closeGo()
	for i, rec := range r.recs {
		r.compareStream(i, rec, r.caps[i].bytes())
	}
	r.compareEvents()
}

func (r *trReplay) closeGo() {
	r.mu.Lock()
	closers := r.closers
	r.closers = nil
	r.mu.Unlock()
	for j := len(closers) - 1; j >= 0; j-- {
		_ = closers[j]()
	}
}

// finish tears everything down; it runs even when the script failed.
func (r *trReplay) finish() {
	r.stopOnce.Do(func() { close(r.stop) })
	r.closeGo()
	r.mu.Lock()
	if r.ln != nil {
		_ = r.ln.Close()
	}
	for _, nc := range r.peerConns {
		if nc != nil {
			_ = nc.Close()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// trMsg is one decoded message of a stream, for message-level comparisons.
type trMsg struct {
	text string // rendering with uuids and dates masked
	raw  string // rendering as is
	typ  string
	data []byte
}

func trDecode(b, term []byte) []trMsg {
	var out []trMsg
	dec := wire.NewDecoder(bytes.NewReader(b), term, 0)
	for {
		m, err := dec.Next()
		var de *wire.DecodeError
		if errors.As(err, &de) {
			out = append(out, trMsg{text: "undecodable: " + de.Error(), raw: "undecodable: " + de.Error()})
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				out = append(out, trMsg{text: "stream ends with: " + err.Error(), raw: "stream ends with: " + err.Error()})
			}
			return out
		}
		mode := "json"
		if m.Binary {
			mode = fmt.Sprintf("frame%d", wire.FrameID(&m))
		}
		data := string(m.Data)
		if m.Bytes {
			data = "bytes:" + hex.EncodeToString(m.Data)
		}
		raw := fmt.Sprintf("%s %s type=%q data=%s", mode, m.Kind, m.Type, data)
		if m.ID != "" {
			raw += " id=" + m.ID
		}
		text := trDateRe.ReplaceAllString(trUUIDRe.ReplaceAllString(raw, "<uuid>"), "<date>")
		out = append(out, trMsg{text: text, raw: raw, typ: m.Type, data: append([]byte(nil), m.Data...)})
	}
}

func trRender(b, term []byte) string {
	var s strings.Builder
	for _, m := range trDecode(b, term) {
		fmt.Fprintf(&s, "    %s\n", m.raw)
	}
	return s.String()
}

func trMasked(b []byte, masks []trMaskRange) []byte {
	out := append([]byte(nil), b...)
	for _, m := range masks {
		if m.Offset+m.Length <= len(out) {
			for k := m.Offset; k < m.Offset+m.Length; k++ {
				out[k] = '#'
			}
		}
	}
	return out
}

// compareStream checks what the Go side wrote on connection i against the
// replaced side's recorded stream.
func (r *trReplay) compareStream(i int, rec *trConnRec, live []byte) {
	r.t.Helper()
	term := []byte(r.tx)
	what := fmt.Sprintf("conn%d %s", i, rec.goDir)
	if r.messageLevel != "" {
		if sum, err := r.compareMessages(rec, live); err != nil {
			r.t.Errorf("%s: message-level comparison (%s) failed: %v\nGo wrote:\n%srecording:\n%s", what, r.messageLevel, err, trRender(live, term), trRender(rec.goBytes, term))
		} else {
			r.t.Logf("%s: message-level (%s): %s", what, r.messageLevel, sum)
		}
		return
	}
	got := live
	extra := 0
	if r.extraPings != "" && len(live) > len(rec.goBytes) {
		msgs := trDecode(live, term)
		if len(msgs) > len(rec.goEnds) {
			allPings := true
			for _, m := range msgs[len(rec.goEnds):] {
				allPings = allPings && m.typ == wire.TypePing
			}
			if allPings {
				got, extra = live[:len(rec.goBytes)], len(msgs)-len(rec.goEnds)
			}
		}
	}
	g, w := trMasked(got, rec.goMasks), trMasked(rec.goBytes, rec.goMasks)
	if !bytes.Equal(g, w) {
		if r.pingOrder != "" {
			// The bytes depend on how two timers interleaved in this run.
			if sum, err := r.compareMessages(rec, live); err == nil {
				r.t.Logf("%s: message-level, as the bytes differed only in the order of pings and pongs (%s): %s", what, r.pingOrder, sum)
				return
			}
		}
		k := 0
		for k < len(g) && k < len(w) && g[k] == w[k] {
			k++
		}
		from := max(0, k-48)
		r.t.Errorf("%s: the Go side's bytes differ from the recorded %s side's (masked uuid/iso_date ranges shown as #); %d bytes written, %d recorded; first difference at byte %d:\n  Go:        %q\n  recording: %q\nGo wrote:\n%srecording:\n%s",
			what, r.role, len(live), len(rec.goBytes), k, g[from:min(len(g), k+48)], w[from:min(len(w), k+48)],
			trRender(live, term), trRender(rec.goBytes, term))
		return
	}
	msg := fmt.Sprintf("%s: byte-exact, %d bytes, %d messages", what, len(rec.goBytes), len(rec.goEnds))
	if extra > 0 {
		msg += fmt.Sprintf(", then %d more ping(s) (%s)", extra, r.extraPings)
	}
	r.t.Log(msg)
}

// compareMessages compares at the message level: messages other than
// pings and pongs in order, pongs as a multiset, pings by count (the
// recorded number, or more with extraPings), each pong answering a ping
// the peer sent. It returns a summary, or what differs.
func (r *trReplay) compareMessages(rec *trConnRec, live []byte) (string, error) {
	term := []byte(r.tx)
	split := func(ms []trMsg) (other, pings, pongs []string, pongIDs []string) {
		for _, m := range ms {
			switch m.typ {
			case wire.TypePing:
				pings = append(pings, m.text)
			case wire.TypePong:
				pongs = append(pongs, m.text)
				var d struct {
					ID string `json:"_id"`
				}
				_ = json.Unmarshal(m.data, &d)
				pongIDs = append(pongIDs, d.ID)
			default:
				other = append(other, m.text)
			}
		}
		sort.Strings(pongs)
		return
	}
	gm, wm := trDecode(live, term), trDecode(rec.goBytes, term)
	gOther, gPings, gPongs, gIDs := split(gm)
	wOther, wPings, wPongs, _ := split(wm)
	switch {
	case !reflect.DeepEqual(gOther, wOther):
		return "", errors.New("the messages other than pings and pongs differ")
	case !reflect.DeepEqual(gPongs, wPongs):
		return "", errors.New("the pongs differ")
	case len(gPings) < len(wPings) || (r.extraPings == "" && len(gPings) != len(wPings)):
		return "", fmt.Errorf("%d pings written, %d recorded", len(gPings), len(wPings))
	}
	for _, id := range gIDs {
		if !rec.peerGen[id] {
			return "", fmt.Errorf("pong for %q, which is not one of the peer's pings", id)
		}
	}
	return fmt.Sprintf("%d messages (%d others in order, %d pongs, %d pings; recorded %d pings)",
		len(gm), len(gOther), len(gPongs), len(gPings), len(wPings)), nil
}

// compareEvents checks what the Go application saw against the replaced
// side's recorded events.
func (r *trReplay) compareEvents() {
	r.t.Helper()
	side, cbSide := "client", func(s string) bool { return s == "client" }
	if r.role == "server" {
		// Receives, handshakes and disconnects as the session saw them;
		// callback results of server.send(sock, ..., cb) on the server.
		side, cbSide = "session", func(s string) bool { return strings.HasPrefix(s, "server") }
	}
	var wantHS []string
	var wantTx, wantRx, wantDisc int
	var wantRecv, wantRes []trWant
	var nodeErrs []string
	for _, e := range r.tr.Events {
		var first bool
		if len(e.Args) > 0 {
			_ = json.Unmarshal(e.Args[0], &first)
		}
		switch {
		case e.Side == side && e.Event == "handshake":
			s := "true"
			if !first {
				var er struct {
					E struct {
						Code string `json:"code"`
					} `json:"$error"`
				}
				if len(e.Args) > 1 {
					_ = json.Unmarshal(e.Args[1], &er)
				}
				s = "false " + er.E.Code
			}
			wantHS = append(wantHS, s)
		case e.Side == side && e.Event == "binary_mode:tx" && first:
			wantTx++
		case e.Side == side && e.Event == "binary_mode:rx" && first:
			wantRx++
		case e.Side == side && e.Event == "disconnect":
			wantDisc++
		case e.Side == side && (e.Event == "receive" || e.Event == "receive:buffer"):
			w, err := trWantFromArgs(e.Args)
			if err != nil {
				r.t.Fatalf("recorded %s event: %v", e.Event, err)
			}
			wantRecv = append(wantRecv, w)
		case cbSide(e.Side) && e.Event == "callback-invoked":
			w, err := trWantFromArgs(e.Args)
			if err != nil {
				r.t.Fatalf("recorded %s event: %v", e.Event, err)
			}
			wantRes = append(wantRes, w)
		case (e.Side == side || cbSide(e.Side)) && e.Event == "error":
			var er struct {
				E struct {
					Code string `json:"code"`
				} `json:"$error"`
			}
			_ = json.Unmarshal(e.Args[0], &er)
			nodeErrs = append(nodeErrs, er.E.Code)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	if !reflect.DeepEqual(r.hs, wantHS) && !(len(r.hs) == 0 && len(wantHS) == 0) {
		r.t.Errorf("handshake outcomes: Go reported %v, the recorded %s %v", r.hs, side, wantHS)
	}
	if r.txOn != wantTx || r.rxOn != wantRx {
		r.t.Errorf("binary mode switches: Go reported tx %d, rx %d; recorded tx %d, rx %d", r.txOn, r.rxOn, wantTx, wantRx)
	}
	if len(r.discs) != wantDisc {
		r.t.Errorf("disconnects: Go reported %d (%v), recorded %d", len(r.discs), r.discs, wantDisc)
	}
	trMatch(r.t, "messages received", append(wantRecv, r.extras...), r.got)
	trMatch(r.t, "request results (callback-invoked)", wantRes, r.results)
	if len(r.errs) > 0 {
		r.t.Errorf("the Go side reported errors: %v", r.errs)
	}
	summary := fmt.Sprintf("events: handshakes %v, binary tx/rx %d/%d, %d received (%d beyond the recording), %d request results, %d disconnects",
		r.hs, r.txOn, r.rxOn, len(r.got), len(r.extras), len(r.results), len(r.discs))
	if len(nodeErrs) > 0 {
		summary += fmt.Sprintf("; the recorded side reported %d error(s) %v, the Go side none", len(nodeErrs), nodeErrs)
	}
	r.t.Log(summary)
}

// trMatch pairs wanted and received messages regardless of order.
func trMatch(t *testing.T, what string, want []trWant, got []trGot) {
	t.Helper()
	used := make([]bool, len(got))
	var missing []string
	for _, w := range want {
		found := false
		for k, g := range got {
			if !used[k] && w.matches(g) {
				used[k], found = true, true
				break
			}
		}
		if !found {
			s := w.String()
			if w.note != "" {
				s += " [" + w.note + "]"
			}
			missing = append(missing, s)
		}
	}
	var unexpected []string
	for k, g := range got {
		if !used[k] {
			unexpected = append(unexpected, g.String())
		}
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		t.Errorf("%s: missing %q; not in the recording %q", what, missing, unexpected)
	}
}
