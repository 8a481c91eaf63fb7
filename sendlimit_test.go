package sockhop

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// TestSendOverLimitWritesNothing: a message over MaxSendSize (default
// MaxMessageSize, what a default peer accepts) is refused by Send and
// Request with ErrMessageTooLarge before a byte is written; the
// connection carries on. The peer is a raw listener that counts bytes.
func TestSendOverLimitWritesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	defer ln.Close()
	var got atomic.Int64
	lines := make(chan struct{}, 4)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := nc.Read(buf)
			got.Add(int64(n))
			if n > 0 && buf[n-1] == '\n' {
				lines <- struct{}{}
			}
			if err != nil {
				return
			}
		}
	}()
	co := fastOpts()
	co.CompatibilityMode = true // a 1.x peer: no handshake, nothing written at connect
	c := NewClient(ClientOptions{Addr: ln.Addr().String(), ConnOptions: co})
	defer c.Close()
	ctx := testCtx(t)
	noErr(t, c.Connect(ctx))
	big := strings.Repeat("x", DefaultMaxMessageSize)
	err = c.Send(ctx, big)
	errorIs(t, err, ErrMessageTooLarge)
	var se *Error
	if !errors.As(err, &se) || se.Code != CodeMessageTooLarge || !strings.Contains(err.Error(), "MaxSendSize (4194304 bytes)") {
		t.Fatalf("Send of %d bytes: %v, want %s naming MaxSendSize", len(big), err, CodeMessageTooLarge)
	}
	_, err = c.Request(ctx, big)
	errorIs(t, err, ErrMessageTooLarge)
	errorIs(t, c.RequestFunc(ctx, big, func(*Message, error) { t.Error("called for a refused request") }), ErrMessageTooLarge)
	errorIs(t, c.Send(ctx, make([]byte, DefaultMaxMessageSize*3/4)), ErrMessageTooLarge) // base64 in a JSON line
	// The peer gets the next message alone: nothing else was written.
	noErr(t, c.Send(ctx, "small"))
	recv(t, lines, "the small message")
	equal(t, "bytes the peer got", got.Load(), int64(len(`{"type":"String","data":"small"}`+"\n")))
}

// TestSendLimitEveryPath: in binary mode, with MaxSendSize 64 KiB, every
// way to send refuses a bigger message and the session stays up: Send,
// SendTyped of a large buffer (written from the caller's memory when the
// queue is idle), Request, SendAll, and a handler's Reply. Under the
// limit each gets through; MaxSendSize -1 lifts the limit.
func TestSendLimitEveryPath(t *testing.T) {
	const limit = 64 << 10
	so := ServerOptions{ConnOptions: fastOpts()}
	so.MaxSendSize = limit
	srv := startServer(t, transports[1], so)
	replyErr := make(chan error, 1)
	srv.Handle("Ask", func(ctx context.Context, m *Message) error {
		err := m.Reply(ctx, strings.Repeat("r", limit))
		replyErr <- err
		if err != nil {
			return m.Reply(ctx, "too large")
		}
		return nil
	})
	co := fastOpts()
	co.MaxSendSize = limit
	c := startClient(t, transports[1], srv, ClientOptions{ConnOptions: co})
	got := make(chan string, 8)
	c.HandleDefault(func(ctx context.Context, m *Message) error {
		got <- m.Type
		return nil
	})
	ctx := testCtx(t)
	eventually(t, "the session", func() bool { return len(srv.Sessions()) == 1 })
	sess := srv.Sessions()[0]

	errorIs(t, c.Send(ctx, strings.Repeat("s", limit)), ErrMessageTooLarge)
	errorIs(t, c.SendTyped(ctx, "Blob", make([]byte, limit)), ErrMessageTooLarge)
	_, err := c.Request(ctx, Named{Type: "Big", Data: strings.Repeat("q", limit)})
	errorIs(t, err, ErrMessageTooLarge)
	errorIs(t, sess.Send(ctx, strings.Repeat("s", limit)), ErrMessageTooLarge)
	errorIs(t, srv.SendAll(ctx, strings.Repeat("a", limit)), ErrMessageTooLarge)

	m, err := c.Request(ctx, Named{Type: "Ask", Data: 1})
	noErr(t, err)
	errorIs(t, recv(t, replyErr, "the handler's Reply"), ErrMessageTooLarge)
	equal(t, "second reply", string(m.JSON()), `"too large"`)

	// Under the limit, everything passes; nothing refused was delivered.
	// (in order after what was refused: had any of it gone out, it
	// would arrive first).
	noErr(t, srv.SendAll(ctx, Named{Type: "Fits", Data: strings.Repeat("a", limit-100)}))
	equal(t, "delivered first", recv(t, got, "the broadcast that fits"), "Fits")
	equal(t, "sessions", len(srv.Sessions()), 1)
	if st := c.Stats(); st.LimitViolations != 0 {
		t.Errorf("refused sends counted as the peer's violations: %+v", st)
	}
}

// TestSendLimitLifted: MaxSendSize -1 sends what the peer accepts
// (here a server with MaxMessageSize 8 MiB) past our own MaxMessageSize.
func TestSendLimitLifted(t *testing.T) {
	so := ServerOptions{ConnOptions: fastOpts()}
	so.MaxMessageSize = 8 << 20
	srv := startServer(t, transports[0], so)
	sizes := make(chan int, 1)
	srv.Handle("Blob", func(ctx context.Context, m *Message) error {
		sizes <- len(m.Bytes())
		return nil
	})
	co := fastOpts()
	co.MaxSendSize = -1
	c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: co})
	noErr(t, c.SendTyped(testCtx(t), "Blob", make([]byte, 5<<20)))
	equal(t, "size", recv(t, sizes, "the 5 MiB buffer"), 5<<20)
}
