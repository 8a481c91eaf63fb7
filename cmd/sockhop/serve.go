package main

import (
	"context"
	"errors"
	"sync"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

var serveUsage = usage{
	synopsis: "sockhop serve [--addr HOST:PORT | --unix PATH] [--compat] [--no-binary] [--echo] [--json] [--max-message BYTES]\n" +
		"              [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n" +
		"              [--harden] [--drop-failed-handshake] [--idle D] [--ping D] [--pre-handshake-max BYTES]\n" +
		"              [--max-per-ip N] [--min-rate BYTES] [--message-grace D] [--memory-budget BYTES]\n" +
		"              [--max-handlers N] [--max-connections N] [--max-protocol-errors N]",
	about: `Runs a Sockhop server and reports every event, one line each: listening,
connect, handshake, binary (a direction switching to binary mode later),
receive, disconnect and error. With --json, or when stdout is not a terminal,
each line is a JSON object such as
  {"event":"receive","session":1,"type":"Widget","data":{"id":7}}
  {"event":"receive","session":1,"type":"Tile","base64":"AQID","request":true}
Bytes (a Buffer, a typed buffer, a Sockhop 1.x Buffer object) are shown as
base64. With --echo each message goes back to its sender unchanged, as the
reply when the sender asked for one. SIGINT or SIGTERM closes every session
and exits 0.`,
	examples: `sockhop serve
sockhop serve --echo --addr 127.0.0.1:0
sockhop serve --unix /tmp/sockhop.sock --json | jq .
sockhop serve --compat            # a Sockhop 1.x peer's view of the world
sockhop serve --tls-cert cert.pem --tls-key key.pem
sockhop serve --harden --addr 0.0.0.0:50000   # facing an untrusted network (2.x peers only)`,
}

// shutdownGrace bounds the close on a signal: sessions are flushed and
// half-closed, but a peer that does not answer must not keep us running.
const shutdownGrace = 900 * time.Millisecond

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("serve")
	var cf connFlags
	cf.register(fs)
	var tf serverTLSFlags
	tf.register(fs)
	var lim serveLimits
	lim.register(fs)
	echo := fs.Bool("echo", false, "send every message back to its sender (requests: as the reply)")
	jsonOut := fs.Bool("json", false, "one JSON object per event (the default when stdout is not a terminal)")
	if _, err := parseFlags(e, fs, serveUsage, args, 0); err != nil {
		return err
	}
	if err := cf.check(fs); err != nil {
		return err
	}
	tlsCfg, err := tf.config()
	if err != nil {
		return err
	}

	sv := &server{rep: &reporter{w: e.stdout, json: *jsonOut || !isTerminal(e.stdout)}, echo: *echo}
	so := sockhop.ServerOptions{
		Addr:           cf.addr,
		Path:           cf.unix,
		TLSConfig:      tlsCfg,
		ConnOptions:    cf.connOptions(),
		OnSessionStart: sv.onStart,
		OnSessionEnd:   sv.onEnd,
		OnHandshake:    sv.onHandshake,
		OnBinaryMode:   sv.onBinary,
		OnError:        sv.onError,
	}
	lim.apply(&so)
	srv := sockhop.NewServer(so)
	srv.HandleDefault(sv.onMessage)
	if err := srv.Listen(); err != nil {
		return err
	}
	if cf.unix != "" {
		sv.rep.emit(event{Event: "listening", Unix: cf.unix})
	} else {
		sv.rep.emit(event{Event: "listening", Addr: srv.Addr().String()})
	}

	<-ctx.Done()
	closed := make(chan struct{})
	go func() {
		_ = srv.Close()
		close(closed)
	}()
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
	}
	return nil
}

// server holds serve's hooks and handler.
type server struct {
	rep  *reporter
	echo bool
}

// sessionReport is what serve remembers per session to report its
// handshake once and truthfully. When our side's handshake succeeds with
// binary mode granted, the peer's transition line is usually still on its
// way (the peer switches only after reading our answer), so the handshake
// line waits for it, briefly, to show binary_rx as it will be.
type sessionReport struct {
	mu    sync.Mutex
	state int // one of the hs* constants
	timer *time.Timer
}

const (
	hsPending  = iota // handshake not finished
	hsHeld            // succeeded, waiting for the peer's transition
	hsReported        // the handshake line is out
)

// transitionWait bounds how long a handshake line waits for the peer's
// transition; a conforming peer sends it within one round trip.
const transitionWait = 500 * time.Millisecond

func report(s *sockhop.Session) *sessionReport { return s.Value().(*sessionReport) }

func (sv *server) onStart(_ context.Context, s *sockhop.Session) error {
	s.SetValue(&sessionReport{})
	sv.rep.emit(event{Event: "connect", Session: s.ID(), Remote: remoteName(s.RemoteAddr())})
	return nil
}

func (sv *server) onHandshake(s *sockhop.Session, ok bool, err error) {
	r := report(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := s.State(); ok && st.TxBinary && !st.RxBinary {
		r.state = hsHeld
		r.timer = time.AfterFunc(transitionWait, func() { sv.releaseHandshake(s) })
		return
	}
	sv.emitHandshake(s, r, ok, err)
}

// emitHandshake writes the handshake line; r.mu is held.
func (sv *server) emitHandshake(s *sockhop.Session, r *sessionReport, ok bool, err error) {
	r.state = hsReported
	if r.timer != nil {
		r.timer.Stop()
	}
	st := s.State()
	ev := event{Event: "handshake", Session: s.ID(), Success: &ok,
		BinaryRx: &st.RxBinary, BinaryTx: &st.TxBinary, PeerVersion: st.PeerVersion}
	if err != nil {
		ev.Error = err.Error()
	}
	sv.rep.emit(ev)
}

// releaseHandshake writes a held handshake line, if it still is held.
func (sv *server) releaseHandshake(s *sockhop.Session) {
	r := report(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == hsHeld {
		sv.emitHandshake(s, r, true, nil)
	}
}

func (sv *server) onBinary(s *sockhop.Session, rx, _ bool) {
	r := report(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.state == hsPending:
		// The handshake line will show it.
	case r.state == hsHeld:
		if rx {
			sv.emitHandshake(s, r, true, nil)
		}
	default:
		st := s.State()
		sv.rep.emit(event{Event: "binary", Session: s.ID(), BinaryRx: &st.RxBinary, BinaryTx: &st.TxBinary})
	}
}

func (sv *server) onEnd(s *sockhop.Session, err error) {
	sv.releaseHandshake(s)
	ev := event{Event: "disconnect", Session: s.ID()}
	var se *sockhop.Error
	if errors.As(err, &se) && se.Code != sockhop.CodeClosed {
		ev.Error = err.Error() // cut for a reason of ours: a limit, a timeout, a dead peer
	}
	sv.rep.emit(ev)
}

func (sv *server) onError(s *sockhop.Session, err error) {
	ev := event{Event: "error", Error: err.Error()}
	if s != nil {
		ev.Session = s.ID()
	}
	sv.rep.emit(ev)
}

func (sv *server) onMessage(ctx context.Context, m *sockhop.Message) error {
	sh := show(m)
	sv.rep.emit(event{Event: "receive", Session: m.Session().ID(), shown: &sh, Request: m.IsRequest()})
	if !sv.echo {
		return nil
	}
	err := echo(ctx, m)
	if errors.Is(err, sockhop.ErrDisconnected) || errors.Is(err, sockhop.ErrClosed) {
		return nil // the sender left before its echo could go out; its disconnect is reported
	}
	return err
}

// echo sends m back to its sender with the same type and data: as the
// reply to a request, as a plain message otherwise. A typed buffer can only
// go back as one in binary mode; in JSON mode it goes back as a Buffer.
func echo(ctx context.Context, m *sockhop.Message) error {
	s := m.Session()
	if b, ok := messageBytes(m); ok {
		if m.IsTypedBuffer() && s.State().TxBinary {
			if m.IsRequest() {
				return m.ReplyTyped(ctx, m.Type, b)
			}
			return s.SendTyped(ctx, m.Type, b)
		}
		if m.IsRequest() {
			return m.Reply(ctx, b)
		}
		return s.Send(ctx, b)
	}
	v := sockhop.Named{Type: m.Type} // nil Data: a line without data goes back as null
	if raw := m.JSON(); raw != nil {
		v.Data = raw
	}
	if m.IsRequest() {
		return m.Reply(ctx, v)
	}
	return s.Send(ctx, v)
}
