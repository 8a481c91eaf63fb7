package sockhop

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// slowloris writes b to c one byte every gap until the connection fails or
// stop is closed, and returns the error that ended it.
func slowloris(c net.Conn, b []byte, gap time.Duration, stop <-chan struct{}) error {
	for i := 0; ; i = (i + 1) % len(b) {
		if _, err := c.Write(b[i : i+1]); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-time.After(gap):
		}
	}
}

// TestMinReadRate: a message that trickles in slower than MinReadRate is
// cut once MessageGrace has passed, a JSON line and a large frame alike
// (the frame is read into its own buffer); a fast large message and an
// idle connection between messages are not.
func TestMinReadRate(t *testing.T) {
	const grace = 300 * time.Millisecond
	ends := make(chan error, 8)
	so := ServerOptions{ConnOptions: fastOpts(), OnSessionEnd: func(_ *Session, err error) { ends <- err }}
	so.MinReadRate = 10 << 10
	so.MessageGrace = grace
	so.CompatibilityMode = true // raw peers: no handshake to answer
	srv := startServer(t, transports[0], so)
	got := make(chan int, 4)
	srv.HandleDefault(func(_ context.Context, m *Message) error {
		got <- len(m.JSON())
		return nil
	})

	for _, tc := range []struct {
		name  string
		start []byte
		body  []byte
	}{
		{"JSON line", nil, []byte(`{"type":"String","data":"` + strings.Repeat("s", 1<<20))},
		{"large frame", framePrefix(1 << 20), make([]byte, 1<<20)},
	} {
		raw, err := net.Dial("tcp", srv.Addr().String())
		noErr(t, err)
		if tc.start != nil {
			_, err = raw.Write(tc.start)
			noErr(t, err)
		}
		begin := time.Now()
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- slowloris(raw, tc.body, 10*time.Millisecond, stop) }()
		err = recv(t, ends, tc.name+": the cut")
		took := time.Since(begin)
		close(stop)
		<-done
		raw.Close()
		if !errors.Is(err, ErrIdle) || !strings.Contains(err.Error(), "slower than MinReadRate") {
			t.Fatalf("%s: session ended with %v", tc.name, err)
		}
		if took < grace {
			t.Errorf("%s: cut after %s, before MessageGrace", tc.name, took)
		}
		t.Logf("%s: cut after %s: %v", tc.name, took.Round(time.Millisecond), err)
	}

	// A healthy peer: idle longer than the grace between messages, then a
	// 1 MiB line at full speed.
	raw, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer raw.Close()
	time.Sleep(2 * grace) // the observation: idle time between messages is not slow
	line := `{"type":"String","data":"` + strings.Repeat("f", 1<<20) + `"}` + "\n"
	_, err = io.WriteString(raw, line)
	noErr(t, err)
	equal(t, "delivered", recv(t, got, "the fast message"), 1<<20+2)
	select {
	case err := <-ends:
		t.Fatalf("a healthy peer was cut: %v", err)
	default:
	}
}

// framePrefix is a transition line and the header of a typed-buffer frame
// of n data bytes named "Blob", whose data the caller then sends.
func framePrefix(n int) []byte {
	payload := append([]byte{13, 4}, "Blob"...)
	b := []byte(`{"type":"SockhopBinaryModeTransition","data":{}}` + "\n")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)+4+n))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}

// TestMaxConnectionsPerIP: past the limit, connections from the same IP
// are refused at once; a slot comes back when a session ends.
func TestMaxConnectionsPerIP(t *testing.T) {
	errs := make(chan error, 4)
	so := ServerOptions{ConnOptions: fastOpts(), MaxConnectionsPerIP: 2, OnError: func(_ *Session, err error) { errs <- err }}
	srv := startServer(t, transports[0], so)
	c1 := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	third := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
	defer third.Close()
	if err := third.Start(testCtx(t)); err == nil {
		t.Fatal("a third connection from one IP was accepted with MaxConnectionsPerIP 2")
	}
	err := recv(t, errs, "the refusal")
	if !errors.Is(err, &Error{Code: CodeMaxConnections}) || !strings.Contains(err.Error(), "MaxConnectionsPerIP (2)") {
		t.Fatalf("refusal: %v", err)
	}
	noErr(t, c1.Close())
	eventually(t, "the slot back", func() bool { return len(srv.Sessions()) == 1 })
	noErr(t, third.Start(testCtx(t)))
}

// TestHardened: the hardened profile drops a peer that never handshakes,
// cuts a message over 64 KiB before the handshake, and serves a 2.x
// client as usual.
func TestHardened(t *testing.T) {
	ends := make(chan error, 8)
	so := ServerOptions{Hardened: true, OnSessionEnd: func(_ *Session, err error) { ends <- err }}
	so.HandshakeTimeout = time.Second // the large message arrives well before it, even on a loaded machine
	srv := startServer(t, transports[0], so)
	equal(t, "pre-handshake limit", srv.o.MaxPreHandshakeSize, hardenedPreHandshake)
	equal(t, "per IP", srv.o.MaxConnectionsPerIP, hardenedPerIP)
	srv.Handle("Ask", func(ctx context.Context, m *Message) error { return m.Reply(ctx, "ok") })

	silent, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer silent.Close()
	errorIs(t, recv(t, ends, "the silent peer dropped"), ErrHandshakeTimeout)

	big, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer big.Close()
	go io.WriteString(big, `{"type":"String","data":"`+strings.Repeat("b", 100<<10)+`"}`+"\n")
	err = recv(t, ends, "the early large message cut")
	if !errors.Is(err, ErrMessageTooLarge) || !strings.Contains(err.Error(), "MaxPreHandshakeSize") {
		t.Fatalf("early large message: %v", err)
	}

	c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	m, err := c.Request(testCtx(t), Named{Type: "Ask", Data: 1})
	noErr(t, err)
	equal(t, "reply", string(m.JSON()), `"ok"`)
}
