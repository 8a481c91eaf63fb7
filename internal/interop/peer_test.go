package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait for the peer or for the Go side; it is
// generous because CI machines may be loaded (it only bounds failures).
// readyTimeout bounds a peer's start: node, require("sockhop"), listen or
// connect.
const (
	waitTimeout  = 10 * time.Second
	readyTimeout = 20 * time.Second
)

// event is one line node/peer.js printed (see node/README.md).
type event struct {
	Event   string          `json:"event"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`   // nil: no "data" key
	Base64  *string         `json:"base64"` // the bytes of a Buffer message
	Request bool            `json:"request"`
	ID      json.RawMessage `json:"id"`
	Cmd     string          `json:"cmd"`
	Message string          `json:"message"`
	Code    string          `json:"code"`

	line string
}

func (e event) String() string { return e.line }

// peer is a running node/peer.js.
type peer struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event // every event, in order; closed at stdout EOF
	// backlog: events read from events that no expect took yet (used by
	// the test goroutine only).
	backlog []event
	exited  chan struct{} // closed once the process has been waited for

	stderr lockedBuffer

	mu         sync.Mutex
	transcript []event // every stdout line, parsed
	overflow   bool
	bad        []string // problems found while reading stdout
	waitErr    error
	killed     bool

	// allowErrors: "error" and "cmd_error" events are expected (or the
	// peer was given up on), so cleanup does not fail the test for them.
	allowErrors bool
	// allowCodes: "error" events with these codes are expected (e.g. EPIPE
	// when the Go side closes while the peer writes).
	allowCodes []string
}

// startPeer runs `node peer.js role args...` and returns at once; wait
// for readiness with ready. Cleanup sends exit, closes stdin and waits for
// the process (killing it after 5 s), then fails the test if the peer ever
// reported "fatal" or, unless allowErrors is set, an error event.
func startPeer(t testing.TB, role string, args ...string) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, "node", append([]string{"peer.js", role}, args...)...)
	cmd.Dir = nodeDir
	cmd.WaitDelay = 5 * time.Second
	p := &peer{
		t:      t,
		name:   fmt.Sprintf("node %s %s", role, strings.Join(args, " ")),
		cmd:    cmd,
		events: make(chan event, 4096),
		exited: make(chan struct{}),
	}
	cmd.Stderr = &p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatalf("%s: stdin pipe: %v", p.name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatalf("%s: stdout pipe: %v", p.name, err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: start: %v", p.name, err)
	}
	go p.read(stdout)
	t.Cleanup(func() {
		defer cancel()
		p.stop()
		p.check()
	})
	return p
}

// read delivers stdout events until EOF, then waits for the process (all
// of stdout must be read before cmd.Wait).
func (p *peer) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		var ev event
		err := json.Unmarshal([]byte(line), &ev)
		ev.line = line
		p.mu.Lock()
		p.transcript = append(p.transcript, ev)
		if err != nil {
			p.bad = append(p.bad, fmt.Sprintf("unparsable peer output %q: %v", line, err))
		}
		if ev.Event == "fatal" {
			p.bad = append(p.bad, "1.8.4 crashed: "+line)
		}
		p.mu.Unlock()
		select {
		case p.events <- ev:
		default:
			p.mu.Lock()
			p.overflow = true
			p.mu.Unlock()
		}
	}
	if err := sc.Err(); err != nil {
		p.mu.Lock()
		p.bad = append(p.bad, fmt.Sprintf("reading the peer's stdout: %v", err))
		p.mu.Unlock()
		_, _ = io.Copy(io.Discard, stdout) // let it run to its end
	}
	close(p.events)
	err := p.cmd.Wait()
	p.mu.Lock()
	p.waitErr = err
	p.mu.Unlock()
	close(p.exited)
}

// stop asks the peer to exit and waits for it, killing it after 5 s.
// (peer.js exits within 1 s of the command on its own.)
func (p *peer) stop() {
	_, _ = io.WriteString(p.stdin, `{"cmd":"exit"}`+"\n")
	_ = p.stdin.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		p.mu.Lock()
		p.killed = true
		p.mu.Unlock()
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// check fails the test for a crash of the peer, an unexpected error event,
// or an exit that was not clean.
func (p *peer) check() {
	p.mu.Lock()
	defer p.mu.Unlock()
	bad := append([]string(nil), p.bad...)
	for _, ev := range p.transcript {
		if (ev.Event == "error" || ev.Event == "cmd_error") && !p.allowErrors && !slices.Contains(p.allowCodes, ev.Code) {
			bad = append(bad, "unexpected error event: "+ev.line)
		}
	}
	if p.overflow {
		bad = append(bad, "the events channel overflowed (a test read too few events)")
	}
	if p.killed {
		bad = append(bad, "peer did not exit within 5 s of the exit command and was killed")
	} else if p.waitErr != nil && !p.allowErrors {
		bad = append(bad, fmt.Sprintf("peer exit: %v", p.waitErr))
	}
	if len(bad) > 0 {
		p.t.Errorf("%s:\n  %s\n%s", p.name, strings.Join(bad, "\n  "), p.logLocked())
	}
}

// log returns the peer's output so far, for failure messages.
func (p *peer) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logLocked()
}

func (p *peer) logLocked() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s stdout:\n", p.name)
	for _, ev := range p.transcript {
		b.WriteString("    " + ev.line + "\n")
	}
	fmt.Fprintf(&b, "--- stderr:\n%s", p.stderr.String())
	return b.String()
}

// Transcript returns every event printed so far.
func (p *peer) Transcript() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event(nil), p.transcript...)
}

// send writes one command line.
func (p *peer) send(cmd map[string]any) {
	p.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		p.t.Fatalf("%s: marshal command %v: %v", p.name, cmd, err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("%s: writing command %s: %v\n%s", p.name, b, err, p.log())
	}
}

// expect returns the oldest event not yet taken that matches: events
// that did not match an earlier expect are kept (in order) for later ones,
// as replies and receives may interleave in any order. It fails at once on
// a "fatal" event, on the peer's exit, and after waitTimeout.
func (p *peer) expect(what string, match func(event) bool) event {
	p.t.Helper()
	return p.expectWithin(waitTimeout, what, match)
}

func (p *peer) expectWithin(limit time.Duration, what string, match func(event) bool) event {
	p.t.Helper()
	for i, ev := range p.backlog {
		if match(ev) {
			p.backlog = append(p.backlog[:i:i], p.backlog[i+1:]...)
			return ev
		}
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				p.t.Fatalf("%s: exited while waiting for %s\n%s", p.name, what, p.log())
			}
			if ev.Event == "fatal" {
				p.t.Fatalf("%s: 1.8.4 crashed while waiting for %s: %s\n%s", p.name, what, ev.line, p.log())
			}
			if match(ev) {
				return ev
			}
			p.backlog = append(p.backlog, ev)
		case <-timer.C:
			p.t.Fatalf("%s: no %s within %s\n%s", p.name, what, limit, p.log())
		}
	}
}

// expectEvent waits for an event by name.
func (p *peer) expectEvent(name string) event {
	p.t.Helper()
	return p.expect(fmt.Sprintf("%q event", name), func(e event) bool { return e.Event == name })
}

// receives collects the next n "receive" events that are not protocol
// messages the 1.x library hands to its application (SockhopHandshake).
func (p *peer) receives(n int) []event {
	p.t.Helper()
	out := make([]event, 0, n)
	for len(out) < n {
		out = append(out, p.expect(fmt.Sprintf("receive event %d of %d", len(out)+1, n), func(e event) bool {
			return e.Event == "receive" && e.Type != "SockhopHandshake"
		}))
	}
	return out
}

// reply waits for the "reply" event of the request with id k.
func (p *peer) reply(k int) event {
	p.t.Helper()
	return p.expect(fmt.Sprintf("reply to request %d", k), func(e event) bool {
		return e.Event == "reply" && string(e.ID) == fmt.Sprint(k)
	})
}

// startReady starts a peer and waits for its ready event ("listening" or
// "connected").
func startReady(t testing.TB, role string, args ...string) *peer {
	t.Helper()
	p := startPeer(t, role, args...)
	p.ready()
	return p
}

func (p *peer) ready() {
	p.t.Helper()
	want := "connected"
	if strings.Contains(p.name, " server ") {
		want = "listening"
	}
	p.expectWithin(readyTimeout, fmt.Sprintf("%q event", want), func(e event) bool { return e.Event == want })
}

// lockedBuffer is a bytes.Buffer safe for the exec copier and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
