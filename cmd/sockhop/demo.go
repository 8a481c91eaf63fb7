package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

var demoUsage = usage{
	synopsis: "sockhop demo [--json]",
	about: `Starts a server on 127.0.0.1 (a free port) and six clients in this one
process and shows each Sockhop feature working, one line per step: an object,
a raw Buffer, a typed buffer in binary mode, remote callbacks both ways, a
broadcast, sessions that must verify themselves, and a client in
compatibility mode (Sockhop 1.x on the wire). A step says ok only once the
receiving side has observed it; every wait is bounded (2 s), and a step that
fails is named and makes the exit code 1. With --json each line is a JSON
object: the server's address, each step, the summary.`,
	examples: `sockhop demo
sockhop demo --json | jq -r 'select(.event=="step") | .name'
go run ./cmd/sockhop demo`,
}

// The demo's application types. A Go struct travels under its type name,
// as an instance of a Node class of the same name would, so a Node peer
// could take any side of this conversation.
type (
	Widget struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	Verify struct {
		Token string `json:"token"`
	}
	Welcome struct {
		Session uint64 `json:"session"`
	}
	Question struct {
		Text string `json:"text"`
	}
	Answer struct {
		Text string `json:"text"`
	}
	News struct {
		Headline string `json:"headline"`
	}
)

const (
	demoWait       = 2 * time.Second        // bound on every wait
	verifyDeadline = 300 * time.Millisecond // short, so that the demo is quick
	demoToken      = "open sesame"
)

// demo is the server side of the demo and the clients it started.
type demo struct {
	srv     *sockhop.Server
	addr    string
	got     chan received // what the default handler saw
	asked   chan received // Questions the server answered
	dropped chan drop     // sessions closed for not verifying in time
	clients []*sockhop.Client
	watch   sync.WaitGroup // verification watchers
	a       *demoClient    // the client of steps 1-5
}

// received is a message as the server saw it, with its session's state at
// that moment.
type received struct {
	session uint64
	msg     *sockhop.Message
	state   sockhop.State
}

type drop struct {
	session uint64
	after   time.Duration
}

type step struct {
	name string
	run  func(ctx context.Context) (string, error)
}

// demoLine is one line of demo --json: the server's address first, then
// one per step, then the summary.
type demoLine struct {
	Event  string  `json:"event"` // listening, step, done
	Addr   string  `json:"addr,omitempty"`
	Step   int     `json:"step,omitempty"`
	Of     int     `json:"of,omitempty"`
	Name   string  `json:"name,omitempty"`
	Detail string  `json:"detail,omitempty"`
	OK     bool    `json:"ok,omitempty"`
	Ms     float64 `json:"ms,omitempty"`
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("demo")
	jsonOut := fs.Bool("json", false, "one JSON object per line: the server, each step, the summary")
	if _, err := parseFlags(e, fs, demoUsage, args, 0); err != nil {
		return err
	}
	emit := func(l demoLine, text string, a ...any) {
		if *jsonOut {
			b, _ := json.Marshal(l) // nothing in a line can fail to encode
			fmt.Fprintf(e.stdout, "%s\n", b)
			return
		}
		fmt.Fprintf(e.stdout, text, a...)
	}
	start := time.Now()
	d := &demo{got: make(chan received, 8), asked: make(chan received, 8), dropped: make(chan drop, 8)}
	if err := d.listen(); err != nil {
		return err
	}
	defer d.close()
	emit(demoLine{Event: "listening", Addr: d.addr},
		"sockhop demo: server on %s; each session must send Verify within %s or be dropped\n", d.addr, verifyDeadline)
	steps := []step{
		{"object", d.object},
		{"buffer", d.buffer},
		{"typed buffer", d.typedBuffer},
		{"remote callback", d.callbacks},
		{"broadcast", d.broadcast},
		{"verification", d.verification},
		{"compatibility", d.compatibility},
	}
	for i, st := range steps {
		detail, err := st.run(ctx)
		if err != nil {
			return fmt.Errorf("demo step %d/%d (%s) failed: %w", i+1, len(steps), st.name, err)
		}
		emit(demoLine{Event: "step", Step: i + 1, Of: len(steps), Name: st.name, Detail: detail, OK: true},
			"step %d/%d %-16s %s: ok\n", i+1, len(steps), st.name+":", detail)
	}
	d.close()
	took := time.Since(start)
	emit(demoLine{Event: "done", Of: len(steps), OK: true, Ms: float64(took.Microseconds()) / 1000},
		"all %d steps observed and everything closed in %s\n", len(steps), took.Round(time.Millisecond))
	return nil
}

func (d *demo) listen() error {
	d.srv = sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0", OnSessionStart: d.requireVerify})
	d.srv.Handle("Verify", d.onVerify)
	d.srv.Handle("Question", d.onQuestion)
	d.srv.HandleDefault(d.onMessage)
	if err := d.srv.Listen(); err != nil {
		return err
	}
	d.addr = d.srv.Addr().String()
	return nil
}

// close closes every client, then the server, and waits for the watchers.
// It runs twice on success (the deferred call is then a no-op).
func (d *demo) close() {
	for _, c := range d.clients {
		_ = c.Close()
	}
	_ = d.srv.Close()
	d.watch.Wait()
}

// verification is a session's value: closed once it verified itself.
type verification struct {
	once sync.Once
	ok   chan struct{}
}

func verified(s *sockhop.Session) bool {
	select {
	case <-s.Value().(*verification).ok:
		return true
	default:
		return false
	}
}

// requireVerify runs for each new session: it drops the session unless a
// Verify arrives within verifyDeadline. ctx ends when the server closes,
// which also ends the watcher.
func (d *demo) requireVerify(ctx context.Context, s *sockhop.Session) error {
	v := &verification{ok: make(chan struct{})}
	s.SetValue(v)
	start := time.Now()
	d.watch.Add(1)
	go func() {
		defer d.watch.Done()
		t := time.NewTimer(verifyDeadline)
		defer t.Stop()
		select {
		case <-v.ok:
		case <-s.Done():
		case <-ctx.Done():
		case <-t.C:
			_ = s.Close()
			select {
			case d.dropped <- drop{s.ID(), time.Since(start)}:
			case <-ctx.Done():
			}
		}
	}()
	return nil
}

func (d *demo) onVerify(ctx context.Context, m *sockhop.Message) error {
	var v Verify
	if err := m.Decode(&v); err != nil {
		return err
	}
	s := m.Session()
	if v.Token != demoToken {
		return s.Close()
	}
	ver := s.Value().(*verification)
	ver.once.Do(func() { close(ver.ok) })
	return m.Reply(ctx, Welcome{Session: s.ID()})
}

// onQuestion answers every question with "pong".
func (d *demo) onQuestion(ctx context.Context, m *sockhop.Message) error {
	if !verified(m.Session()) {
		return errors.New("question from an unverified session ignored")
	}
	d.observe(ctx, d.asked, m)
	return m.Reply(ctx, Answer{Text: "pong"})
}

func (d *demo) onMessage(ctx context.Context, m *sockhop.Message) error {
	if !verified(m.Session()) {
		return errors.New("message from an unverified session ignored")
	}
	d.observe(ctx, d.got, m)
	return nil
}

func (d *demo) observe(ctx context.Context, ch chan received, m *sockhop.Message) {
	select {
	case ch <- received{m.Session().ID(), m, m.Session().State()}:
	case <-ctx.Done():
	}
}

// await receives from ch within demoWait; what names the awaited event.
func await[T any](ctx context.Context, ch <-chan T, what string) (T, error) {
	t := time.NewTimer(demoWait)
	defer t.Stop()
	var zero T
	select {
	case v := <-ch:
		return v, nil
	case <-t.C:
		return zero, fmt.Errorf("%s: not observed within %s", what, demoWait)
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// demoClient is one client with what its handlers observed.
type demoClient struct {
	name     string
	c        *sockhop.Client
	session  uint64        // its session on the server, from Welcome
	news     chan News     // broadcasts received
	rxBinary chan struct{} // closed when the server's transition arrived
	lost     chan error    // why the connection ended
}

// dial connects a client: Start (connect and handshake), or Connect in
// compatibility mode, which has no handshake.
func (d *demo) dial(ctx context.Context, name string, compat bool) (*demoClient, error) {
	dc := &demoClient{name: name, news: make(chan News, 1), rxBinary: make(chan struct{}), lost: make(chan error, 1)}
	var rxOnce sync.Once
	dc.c = sockhop.NewClient(sockhop.ClientOptions{
		Addr:        d.addr,
		ConnOptions: sockhop.ConnOptions{CompatibilityMode: compat},
		OnBinaryMode: func(_ *sockhop.Client, rx, _ bool) {
			if rx {
				rxOnce.Do(func() { close(dc.rxBinary) })
			}
		},
		OnDisconnect: func(_ *sockhop.Client, err error) {
			select {
			case dc.lost <- err:
			default:
			}
		},
	})
	d.clients = append(d.clients, dc.c)
	dc.c.Handle("News", func(_ context.Context, m *sockhop.Message) error {
		var n News
		if err := m.Decode(&n); err != nil {
			return err
		}
		select {
		case dc.news <- n:
		default:
		}
		return nil
	})
	dc.c.Handle("Question", func(ctx context.Context, m *sockhop.Message) error {
		return m.Reply(ctx, Answer{Text: "this is client " + name})
	})
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	var err error
	if compat {
		err = dc.c.Connect(ctx)
	} else {
		err = dc.c.Start(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("client %s: %w", name, err)
	}
	return dc, nil
}

// join dials and verifies a client.
func (d *demo) join(ctx context.Context, name string, compat bool) (*demoClient, error) {
	dc, err := d.dial(ctx, name, compat)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	reply, err := dc.c.Request(ctx, Verify{Token: demoToken})
	if err != nil {
		return nil, fmt.Errorf("client %s verifying: %w", name, err)
	}
	var w Welcome
	if err := reply.Decode(&w); err != nil {
		return nil, fmt.Errorf("client %s verifying: %w", name, err)
	}
	dc.session = w.Session
	return dc, nil
}

// session returns the server's side of a client's connection.
func (d *demo) session(dc *demoClient) (*sockhop.Session, error) {
	for _, s := range d.srv.Sessions() {
		if s.ID() == dc.session {
			return s, nil
		}
	}
	return nil, fmt.Errorf("the server has no session %d for client %s", dc.session, dc.name)
}

func (d *demo) object(ctx context.Context) (string, error) {
	a, err := d.join(ctx, "A", false)
	if err != nil {
		return "", err
	}
	d.a = a
	sent := Widget{ID: 7, Name: "sprocket"}
	if err := a.c.Send(ctx, sent); err != nil {
		return "", err
	}
	r, err := await(ctx, d.got, "the server receiving the Widget")
	if err != nil {
		return "", err
	}
	var w Widget
	if r.msg.Type != "Widget" || r.msg.Decode(&w) != nil || w != sent {
		return "", fmt.Errorf("the server received %s, not the Widget", r.msg)
	}
	return fmt.Sprintf("client A (session %d) sent Widget%+v; the server received type %q %s",
		a.session, sent, r.msg.Type, r.msg.JSON()), nil
}

func (d *demo) buffer(ctx context.Context) (string, error) {
	raw := []byte("raw\x00\x01\xffbytes")
	if err := d.a.c.Send(ctx, raw); err != nil {
		return "", err
	}
	r, err := await(ctx, d.got, "the server receiving the Buffer")
	if err != nil {
		return "", err
	}
	if r.msg.Type != "Buffer" || !r.msg.IsBytes() || r.msg.IsTypedBuffer() || !bytes.Equal(r.msg.Bytes(), raw) {
		return "", fmt.Errorf("the server received %s, not the Buffer", r.msg)
	}
	return fmt.Sprintf("client A sent %d raw bytes ([]byte); the server received a %q of the same %d bytes",
		len(raw), r.msg.Type, len(r.msg.Bytes())), nil
}

func (d *demo) typedBuffer(ctx context.Context) (string, error) {
	if st := d.a.c.State(); !st.HandshakeOK || !st.TxBinary {
		return "", fmt.Errorf("client A is not sending in binary mode after its handshake: %+v", st)
	}
	if _, err := await(ctx, d.a.rxBinary, "client A receiving in binary mode"); err != nil {
		return "", err
	}
	tile := []byte{0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 'I', 'H', 'D', 'R'}
	if err := d.a.c.SendTyped(ctx, "Tile", tile); err != nil {
		return "", err
	}
	r, err := await(ctx, d.got, "the server receiving the Tile")
	if err != nil {
		return "", err
	}
	if !r.msg.IsTypedBuffer() || r.msg.Type != "Tile" || !bytes.Equal(r.msg.Bytes(), tile) {
		return "", fmt.Errorf("the server received %s, not the Tile", r.msg)
	}
	if !r.state.RxBinary {
		return "", errors.New("the Tile arrived while the server was not receiving in binary mode")
	}
	return fmt.Sprintf("after the handshake both sides send binary frames; client A sent typed buffer %q (%d bytes), the server received it whole",
		r.msg.Type, len(r.msg.Bytes())), nil
}

func (d *demo) callbacks(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	reply, err := d.a.c.Request(ctx, Question{Text: "ping?"})
	if err != nil {
		return "", fmt.Errorf("client A's request: %w", err)
	}
	if _, err := await(ctx, d.asked, "the server answering client A"); err != nil {
		return "", err
	}
	var ans Answer
	if reply.Type != "Answer" || reply.Decode(&ans) != nil || ans.Text != "pong" {
		return "", fmt.Errorf("client A got %s as the reply", reply)
	}
	s, err := d.session(d.a)
	if err != nil {
		return "", err
	}
	back, err := s.Request(ctx, Question{Text: "who are you?"})
	if err != nil {
		return "", fmt.Errorf("the server's request to session %d: %w", s.ID(), err)
	}
	var who Answer
	if back.Type != "Answer" || back.Decode(&who) != nil || who.Text != "this is client A" {
		return "", fmt.Errorf("the server got %s as the reply", back)
	}
	return fmt.Sprintf("client A asked %q, the server's handler replied %q; the server asked session %d %q, client A's handler replied %q",
		"ping?", ans.Text, s.ID(), "who are you?", who.Text), nil
}

func (d *demo) broadcast(ctx context.Context) (string, error) {
	b, err := d.join(ctx, "B", false)
	if err != nil {
		return "", err
	}
	c, err := d.join(ctx, "C", false)
	if err != nil {
		return "", err
	}
	if n := len(d.srv.Sessions()); n != 3 {
		return "", fmt.Errorf("the server has %d sessions, want 3", n)
	}
	news := News{Headline: "sockhop speaks Go"}
	if err := d.srv.SendAll(ctx, news); err != nil {
		return "", err
	}
	for _, dc := range []*demoClient{d.a, b, c} {
		n, err := await(ctx, dc.news, "client "+dc.name+" receiving the broadcast")
		if err != nil {
			return "", err
		}
		if n != news {
			return "", fmt.Errorf("client %s received %+v", dc.name, n)
		}
	}
	return fmt.Sprintf("one SendAll of News %q to the 3 sessions; clients A, B and C each received it", news.Headline), nil
}

func (d *demo) verification(ctx context.Context) (string, error) {
	kept, err := d.join(ctx, "D", false)
	if err != nil {
		return "", err
	}
	silent, err := d.dial(ctx, "E", false)
	if err != nil {
		return "", err
	}
	dr, err := await(ctx, d.dropped, "the server dropping unverified client E")
	if err != nil {
		return "", err
	}
	if dr.session == kept.session {
		return "", fmt.Errorf("the server dropped verified client D (session %d)", kept.session)
	}
	if _, err := await(ctx, silent.lost, "client E seeing its connection closed"); err != nil {
		return "", err
	}
	// D connected before E, so its deadline has passed too: it must be live.
	if _, err := d.session(kept); err != nil || !kept.c.State().Connected {
		return "", fmt.Errorf("verified client D was dropped too (%v)", err)
	}
	return fmt.Sprintf("client D sent Verify and session %d is kept; client E sent nothing and session %d was dropped after %s",
		kept.session, dr.session, dr.after.Round(time.Millisecond)), nil
}

func (d *demo) compatibility(ctx context.Context) (string, error) {
	f, err := d.join(ctx, "F", true)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	reply, err := f.c.Request(ctx, Question{Text: "ping?"})
	if err != nil {
		return "", fmt.Errorf("client F's request: %w", err)
	}
	r, err := await(ctx, d.asked, "the server answering client F")
	if err != nil {
		return "", err
	}
	var ans Answer
	if reply.Decode(&ans) != nil || ans.Text != "pong" {
		return "", fmt.Errorf("client F got %s as the reply", reply)
	}
	if st := f.c.State(); st.TxBinary || st.RxBinary || r.state.RxBinary || r.state.TxBinary || r.state.HandshakeOK {
		return "", fmt.Errorf("binary mode or a handshake with a compatibility-mode client: client %+v, server %+v", st, r.state)
	}
	return fmt.Sprintf("client F (no handshake, JSON lines, as Sockhop 1.x) asked %q; the server's session %d, in JSON mode, replied %q",
		"ping?", r.session, ans.Text), nil
}
