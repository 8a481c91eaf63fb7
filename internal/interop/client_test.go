package interop

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// TestGoClientNodeServer runs a Go client against a real Sockhop 1.8.4
// server, in compatibility mode and in default mode.
func TestGoClientNodeServer(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			for _, compat := range []bool{true, false} {
				mode := "Default"
				if compat {
					mode = "Compat"
				}
				t.Run(mode+"ConnectEveryKindAndRequests", func(t *testing.T) { testClientConnect(t, tr, compat) })
			}
			t.Run("DefaultLargeMessagesAfterHandshakeTimeout", func(t *testing.T) { testClientLarge(t, tr) })
			t.Run("DefaultStartFailsThenConnectWorks", func(t *testing.T) { testClientStart(t, tr) })
			t.Run("DefaultStartReportsOnHandshake", func(t *testing.T) { testClientStartHook(t, tr) })
			t.Run("CompatStartRefused", func(t *testing.T) {
				_, addr, path := startNodeServer(t, tr)
				c := newGoClient(t, addr, path, func(o *sockhop.ClientOptions) { o.CompatibilityMode = true })
				err := c.Start(testCtx(t))
				var se *sockhop.Error
				if !errors.As(err, &se) || se.Code != sockhop.CodeHandshakeCompatibilityMode {
					t.Errorf("Start in compatibility mode = %v, want code %s", err, sockhop.CodeHandshakeCompatibilityMode)
				}
			})
		})
	}
}

// testClientConnect: Connect, then every kind both ways and requests both
// ways, in JSON. In compatibility mode no handshake is sent at all; in
// default mode the 1.8.4 server hands our handshake to its application as
// a request (peer.js answers it with an echo), and our handshake times out.
func testClientConnect(t *testing.T, tr transport, compat bool) {
	p, addr, path := startNodeServer(t, tr)
	c := newGoClient(t, addr, path, func(o *sockhop.ClientOptions) { o.CompatibilityMode = compat })
	noError(t, c.Connect(testCtx(t)), "Connect")
	p.expectEvent("connect")

	// A first message right away, before any handshake outcome.
	noError(t, c.Send(testCtx(t), "first"), "Send")
	first := p.receives(1)[0]
	if first.Type != "String" || string(first.Data) != `"first"` {
		t.Errorf("Node got %s, want the String \"first\"", first.line)
	}

	if compat {
		// Messages on one stream keep their order: had a handshake been
		// sent, it would have arrived before "first".
		if hasHandshakeReceive(p) {
			t.Errorf("compatibility mode sent a handshake:\n%s", p.log())
		}
		if st := c.State(); !st.Connected || !st.HandshakeDone || st.HandshakeOK || st.TxBinary || st.RxBinary {
			t.Errorf("state in compatibility mode: %+v", st)
		}
	} else {
		if !hasHandshakeReceive(p) {
			t.Errorf("default mode: 1.8.4 did not see our handshake before \"first\":\n%s", p.log())
		}
		r := c.handshake(t)
		if r.ok || !errors.Is(r.err, sockhop.ErrHandshakeTimeout) {
			t.Errorf("OnHandshake(%v, %v), want (false, ErrHandshakeTimeout)", r.ok, r.err)
		}
		if st := c.State(); !st.Connected || !st.HandshakeDone || st.HandshakeOK || st.TxBinary || st.RxBinary {
			t.Errorf("state after the handshake timeout: %+v", st)
		}
	}

	t.Run("GoSendsEveryKind", func(t *testing.T) { goSendsEveryKind(t, p, c.Send) })
	t.Run("NodeSendsEveryKind", func(t *testing.T) { nodeSendsEveryKind(t, p, c.in, true) })
	t.Run("GoRequestsNode", func(t *testing.T) { goRequestsNode(t, c.Request) })
	t.Run("NodeRequestsGo", func(t *testing.T) { nodeRequestsGo(t, p, c.in) })

	if compat {
		select {
		case r := <-c.hs:
			t.Errorf("OnHandshake(%v, %v) in compatibility mode", r.ok, r.err)
		default:
		}
		if hasHandshakeReceive(p) {
			t.Errorf("compatibility mode sent a handshake:\n%s", p.log())
		}
	}
	c.in.empty(t)
}

// testClientStart: Start in default mode fails with ErrHandshakeTimeout
// against 1.8.4 (and closes that connection); Connect then works in JSON.
func testClientStart(t *testing.T, tr transport) {
	p, addr, path := startNodeServer(t, tr)
	// If Start closes before peer.js's answer to the handshake is written
	// (only on a badly loaded machine), 1.8.4 reports the failed write.
	p.allowCodes = []string{"EPIPE", "ECONNRESET"}
	c := newGoClient(t, addr, path, nil)

	begin := time.Now()
	err := c.Start(testCtx(t))
	took := time.Since(begin)
	if !errors.Is(err, sockhop.ErrHandshakeTimeout) {
		t.Fatalf("Start = %v, want an error matching ErrHandshakeTimeout", err)
	}
	if took < hsTimeout || took > hsTimeout+waitTimeout {
		t.Errorf("Start took %s, want about HandshakeTimeout (%s)", took, hsTimeout)
	}
	p.expectEvent("connect")
	p.expectEvent("disconnect") // Start closed the connection it made
	// Whether OnHandshake reported this failed Start is checked by
	// DefaultStartReportsOnHandshake; drop its report here, if any.
	select {
	case r := <-c.hs:
		if r.ok || !errors.Is(r.err, sockhop.ErrHandshakeTimeout) {
			t.Errorf("OnHandshake(%v, %v), want (false, ErrHandshakeTimeout)", r.ok, r.err)
		}
	default:
	}
	if err := c.Send(testCtx(t), "x"); !errors.Is(err, sockhop.ErrNotConnected) {
		t.Errorf("Send after a failed Start = %v, want ErrNotConnected", err)
	}

	noError(t, c.Connect(testCtx(t)), "Connect after Start failed")
	p.expectEvent("connect")
	noError(t, c.Send(testCtx(t), "second try"), "Send")
	ev := p.receives(1)[0]
	if ev.Type != "String" || string(ev.Data) != `"second try"` {
		t.Errorf("Node got %s", ev.line)
	}
	m, err := c.Request(testCtx(t), 5)
	noError(t, err, "Request")
	if string(m.JSON()) != `{"echo":5,"type":"Number"}` {
		t.Errorf("reply %s", m.JSON())
	}
	r := c.handshake(t)
	if r.ok || !errors.Is(r.err, sockhop.ErrHandshakeTimeout) {
		t.Errorf("second connection: OnHandshake(%v, %v), want (false, ErrHandshakeTimeout)", r.ok, r.err)
	}
	if st := c.State(); !st.Connected || st.TxBinary || st.RxBinary {
		t.Errorf("state: %+v", st)
	}
	c.in.empty(t)
}

// testClientStartHook: every failed Start reports its handshake to
// OnHandshake, as the reference emits handshake(false) before start()
// rejects. Repeated with a short timeout because the report races with
// Start closing the connection.
func testClientStartHook(t *testing.T, tr transport) {
	p, addr, path := startNodeServer(t, tr)
	// peer.js answers each handshake; when Start has already closed the
	// connection, 1.8.4 reports the failed write as an 'error' event.
	p.allowCodes = []string{"EPIPE", "ECONNRESET"}
	c := newGoClient(t, addr, path, func(o *sockhop.ClientOptions) { o.HandshakeTimeout = 50 * time.Millisecond })
	missed := 0
	const attempts = 10
	for range attempts {
		err := c.Start(testCtx(t))
		if !errors.Is(err, sockhop.ErrHandshakeTimeout) {
			t.Fatalf("Start = %v, want an error matching ErrHandshakeTimeout", err)
		}
		select {
		case r := <-c.hs:
			if r.ok || !errors.Is(r.err, sockhop.ErrHandshakeTimeout) {
				t.Errorf("OnHandshake(%v, %v), want (false, ErrHandshakeTimeout)", r.ok, r.err)
			}
		case <-time.After(time.Second):
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("OnHandshake was not called for %d of %d failed Starts", missed, attempts)
	}
}

// testClientLarge: once the handshake has timed out, messages far over
// MaxPreHandshakeSize (64 KiB) travel both ways (see testServerLarge).
func testClientLarge(t *testing.T, tr transport) {
	p, addr, path := startNodeServer(t, tr)
	c := newGoClient(t, addr, path, nil)
	noError(t, c.Connect(testCtx(t)), "Connect")
	p.expectEvent("connect")
	if r := c.handshake(t); r.ok {
		t.Fatalf("handshake with 1.8.4 succeeded?")
	}
	big := strings.Repeat("0123456789abcdef", 200<<10/16) // 200 KiB
	noError(t, c.Send(testCtx(t), big), "Send 200 KiB")
	ev := p.receives(1)[0]
	var at string
	if err := json.Unmarshal(ev.Data, &at); err != nil || at != big {
		t.Errorf("Node got %d bytes (%v), want %d", len(at), err, len(big))
	}
	p.send(map[string]any{"cmd": "send", "data": big})
	m := c.in.nextUnlessGone(t, "a 200 KiB string sent after the handshake timed out", c.down)
	var got string
	if err := m.Decode(&got); err != nil || got != big {
		t.Errorf("Go got %d bytes (%v), want %d", len(got), err, len(big))
	}
}

// TestNodeServerRefusesFalsy documents a 1.8.4 quirk the Go side must live
// with: its server cannot send 0, "" or false at all (ERR_BAD_DATA, nothing
// written), while its client can; a Go client is not affected and keeps
// receiving what follows.
func TestNodeServerRefusesFalsy(t *testing.T) {
	p, addr, path := startNodeServer(t, transports[0])
	p.allowCodes = []string{"ERR_BAD_DATA"}
	c := newGoClient(t, addr, path, func(o *sockhop.ClientOptions) { o.CompatibilityMode = true })
	noError(t, c.Connect(testCtx(t)), "Connect")
	p.expectEvent("connect")
	for _, v := range []any{0, "", false} {
		p.send(map[string]any{"cmd": "send", "data": v})
		ev := p.expect(fmt.Sprintf("cmd_error for %v", v), func(e event) bool { return e.Event == "cmd_error" })
		if ev.Code != "ERR_BAD_DATA" {
			t.Errorf("send %v: %s", v, ev.line)
		}
	}
	p.send(map[string]any{"cmd": "send", "data": 1})
	m := c.in.next(t, "1")
	if m.Type != "Number" || string(m.JSON()) != "1" {
		t.Errorf("got %v %s", m, m.JSON())
	}
	c.in.empty(t)
}
