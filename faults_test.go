package sockhop

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// errLog collects the errors a server reports.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(_ *Session, err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errLog) has(code string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		if e, ok := err.(*Error); ok && e.Code == code {
			return true
		}
	}
	return false
}

// TestCrashInputsServer feeds the Go server every input that kills a Node
// Sockhop process (PROTOCOL.md 14.2): each is reported, the connection that
// sent it keeps working, and so do the others.
func TestCrashInputsServer(t *testing.T) {
	inputs := []struct {
		name, line, code string
	}{
		{"null line", "null", CodeBadData},
		{"unknown callback id", `{"type":"Object","data":{},"callback_id":"not-pending"}`, CodeUnknownCallback},
		{"id and unknown callback id", `{"type":"Object","data":{},"id":"x","callback_id":"y"}`, CodeUnknownCallback},
		{"handshake with null data", `{"type":"SockhopHandshake","data":null,"id":"h1"}`, ""},
		{"ping with null data", `{"type":"SockhopPing","data":null}`, ""},
		{"corrupt line", `{"type":`, CodeBadBufferData},
		{"empty line", ``, CodeBadBufferData},
	}
	var log errLog
	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts(), OnError: log.add})
	srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	healthy := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})

	raw, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer raw.Close()
	for _, in := range inputs {
		_, err := io.WriteString(raw, in.line+"\n")
		noErr(t, err)
		if in.code != "" {
			eventually(t, in.name+" reported as "+in.code, func() bool { return log.has(in.code) })
		}
	}
	// The raw connection still works: a request on it is answered.
	_, err = io.WriteString(raw, `{"type":"Echo","data":5,"id":"r1"}`+"\n")
	noErr(t, err)
	got := readUntil(t, raw, `"callback_id":"r1"}`)
	if want := `{"type":"Number","data":5,"callback_id":"r1"}` + "\n"; !strings.HasSuffix(got, want) {
		t.Fatalf("raw peer read %q, want it to end with %q", got, want)
	}
	r, err := healthy.Request(testCtx(t), Named{Type: "Echo", Data: "ok"})
	noErr(t, err)
	equal(t, "healthy reply", string(r.JSON()), `"ok"`)
}

// readUntil reads from c until the bytes read contain s.
func readUntil(t *testing.T, c net.Conn, s string) string {
	t.Helper()
	var all []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(all), s) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading until %q: %v (read %q)", s, err, all)
		}
		all = append(all, buf[:n]...)
	}
	return string(all)
}

// TestOversizeClosesOnlyThatConnection: a frame header announcing 4 GiB and
// an endless line before the handshake each close the offending connection
// with ErrMessageTooLarge, while another client carries on.
func TestOversizeClosesOnlyThatConnection(t *testing.T) {
	var log errLog
	so := ServerOptions{ConnOptions: fastOpts(), OnError: log.add}
	so.MaxMessageSize = 64 << 10
	srv := startServer(t, transports[0], so)
	srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	healthy := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})

	endless := func(raw net.Conn) {
		chunk := []byte(strings.Repeat("a", 16<<10))
		for range 16 { // 256 KiB, four times the limit
			if _, err := raw.Write(chunk); err != nil {
				return // closed by the server, as it should
			}
		}
	}
	huge := func(raw net.Conn) {
		io.WriteString(raw, `{"type":"SockhopBinaryModeTransition","data":{}}`+"\n")
		var h [5]byte
		binary.LittleEndian.PutUint32(h[:], 0xFFFFFFFF)
		h[4] = 10
		raw.Write(h[:])
	}
	for name, attack := range map[string]func(net.Conn){"endless line": endless, "4 GiB frame": huge} {
		raw, err := net.Dial("tcp", srv.Addr().String())
		noErr(t, err)
		attack(raw)
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, raw) // returns when the server closes
		raw.Close()
		if err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("%s: connection not closed by the server: %v", name, err)
		}
		eventually(t, name+" reported", func() bool { return log.has(CodeMessageTooLarge) })
	}
	r, err := healthy.Request(testCtx(t), Named{Type: "Echo", Data: "ok"})
	noErr(t, err)
	equal(t, "healthy reply", string(r.JSON()), `"ok"`)
	eventually(t, "only the healthy session left", func() bool { return len(srv.Sessions()) == 1 })
	st := srv.Stats()
	equal(t, "limit violations counted", st.LimitViolations, 2)
}

// TestMaxConnections: connections over the limit are refused at once, with
// an error naming the limit, and counted; the others carry on.
func TestMaxConnections(t *testing.T) {
	var log errLog
	o := ServerOptions{ConnOptions: fastOpts(), OnError: log.add, MaxConnections: 3}
	srv := startServer(t, transports[0], o)
	srv.Handle("Number", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	clients := make([]*Client, 0, 3)
	for range 3 {
		clients = append(clients, startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()}))
	}
	for range 2 {
		c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
		if err := c.Start(testCtx(t)); err == nil {
			t.Fatal("a connection over MaxConnections was accepted")
		}
		c.Close()
	}
	eventually(t, "refusals reported", func() bool { return log.has(CodeMaxConnections) })
	equal(t, "limit violations", srv.Stats().LimitViolations, 2)
	for i, c := range clients {
		r, err := c.Request(testCtx(t), i)
		noErr(t, err)
		equal(t, "reply", string(r.JSON()), fmt.Sprint(i))
	}
}

// TestRequestLimits: MaxConcurrentRequests bounds the request handlers
// running at once on a connection (the rest wait their turn, none is
// lost), and MaxPendingRequests bounds our own requests awaiting replies.
func TestRequestLimits(t *testing.T) {
	o := ServerOptions{ConnOptions: fastOpts()}
	o.MaxConcurrentRequests = 2
	srv := startServer(t, transports[0], o)
	var mu sync.Mutex
	running, peak := 0, 0
	release := make(chan struct{})
	srv.Handle("Slow", func(ctx context.Context, m *Message) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return m.Reply(ctx, "done")
	})
	co := ClientOptions{ConnOptions: fastOpts()}
	co.MaxPendingRequests = 5
	c := startClient(t, transports[0], srv, co)
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := c.Request(testCtx(t), Named{Type: "Slow", Data: 1})
			errs <- err
		}()
	}
	eventually(t, "5 requests pending", func() bool { return c.Stats().RequestsPending == 5 })
	_, err := c.Request(testCtx(t), Named{Type: "Slow", Data: 1})
	errorIs(t, err, &Error{Code: CodeTooManyRequests})
	eventually(t, "2 handlers running", func() bool { mu.Lock(); defer mu.Unlock(); return running == 2 })
	time.Sleep(50 * time.Millisecond) // room for a third to start, were the bound broken
	close(release)
	for range 5 {
		noErr(t, recv(t, errs, "a reply"))
	}
	mu.Lock()
	equal(t, "peak concurrent handlers", peak, 2)
	mu.Unlock()
	equal(t, "limit violations counted", c.Stats().LimitViolations, 1)
}
