package sockhop

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestErrorText: errors read as one line, with no prefix or address said
// twice, and errors.Is/As still reach the cause.
func TestErrorText(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	c := NewClient(ClientOptions{Addr: addr, ConnOptions: fastOpts()})
	defer c.Close()
	err = c.Connect(testCtx(t))
	equal(t, "connect refused", errText(err), "sockhop: connect to tcp "+addr+": connection refused")
	errorIs(t, err, syscall.ECONNREFUSED)
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("the *net.OpError is not reachable with errors.As: %#v", err)
	}

	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
	c2 := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	err = c2.Send(testCtx(t), make(chan int))
	equal(t, "encode", errText(err), "sockhop: cannot encode chan int as JSON: json: unsupported type: chan int")
	errorIs(t, err, &Error{Code: CodeBadData})

	busy := NewServer(ServerOptions{Addr: srv.Addr().String()})
	err = busy.Listen()
	equal(t, "listen", errText(err), "sockhop: listen on "+srv.Addr().String()+": address already in use")
	errorIs(t, err, syscall.EADDRINUSE)

	short, cancel := context.WithTimeout(testCtx(t), time.Millisecond)
	defer cancel()
	srv.Handle("Slow", func(ctx context.Context, m *Message) error {
		<-ctx.Done()
		return m.Reply(context.Background(), nil)
	})
	_, err = c2.Request(short, Named{Type: "Slow", Data: 1})
	equal(t, "timeout", errText(err), `sockhop: request "Slow" got no reply: context deadline exceeded`)
}

// errText is err's text, checked to say "sockhop: " once.
func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if strings.Count(s, "sockhop: ") > 1 {
		return "prefix repeated: " + s
	}
	return s
}
