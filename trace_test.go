package sockhop

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// traceLog collects trace events.
type traceLog struct {
	mu  sync.Mutex
	evs []string
}

func (l *traceLog) trace(dir string) func(TraceEvent) {
	return func(ev TraceEvent) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.evs = append(l.evs, dir+" "+ev.describe())
	}
}

func (ev TraceEvent) describe() string {
	var b strings.Builder
	b.WriteString(ev.Kind + " " + ev.Type)
	if ev.Protocol {
		b.WriteString(" protocol")
	}
	if ev.Binary {
		b.WriteString(" frame")
	} else {
		b.WriteString(" line")
	}
	if ev.Bytes {
		b.WriteString(" bytes")
	}
	if ev.CallbackID != "" {
		b.WriteString(" id")
	}
	return b.String()
}

func (l *traceLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.evs...)
}

// TestTrace: a Trace sees every message both ways, the protocol's own
// included, with the mode, the callback id and the sizes the reference's
// debug events report (sending: the whole line or frame; receiving: the
// line without terminator, the frame without header).
func TestTrace(t *testing.T) {
	var sl, cl traceLog
	so := ServerOptions{ConnOptions: fastOpts()}
	sizes := make(chan int, 16)
	so.Trace = &Trace{Sending: sl.trace("send"), Received: func(ev TraceEvent) {
		sl.trace("recv")(ev)
		if ev.Type == "Tile" {
			sizes <- ev.Size
		}
		if ev.Session == 0 {
			t.Errorf("a server's event without its session: %+v", ev)
		}
	}}
	srv := startServer(t, transports[0], so)
	srv.Handle("Ask", func(ctx context.Context, m *Message) error { return m.Reply(ctx, "yes") })
	srv.Handle("Tile", func(ctx context.Context, m *Message) error { return nil })
	co := ClientOptions{ConnOptions: fastOpts()}
	co.Trace = &Trace{Sending: func(ev TraceEvent) {
		cl.trace("send")(ev)
		if ev.Type == "Tile" {
			sizes <- ev.Size
		}
	}, Received: cl.trace("recv")}
	c := startClient(t, transports[0], srv, co)
	ctx := testCtx(t)
	_, err := c.Request(ctx, Named{Type: "Ask", Data: 1})
	noErr(t, err)
	tile := make([]byte, 100)
	noErr(t, c.SendTyped(ctx, "Tile", tile))
	sent, got := recv(t, sizes, "the Tile sent"), recv(t, sizes, "the Tile received")
	equal(t, "sent size", sent, wireFrameSize("Tile", len(tile)))
	equal(t, "received size", got, sent-5)
	noErr(t, c.Close())

	client := strings.Join(cl.all(), "\n")
	for _, want := range []string{
		"send request SockhopHandshake protocol line id",
		"recv response Object protocol line id", // the reply to our handshake
		"send response Object protocol line id",
		"send plain SockhopBinaryModeTransition protocol line",
		"recv plain SockhopBinaryModeTransition protocol line",
		"send request Ask frame id",
		"recv response String frame id",
		"send plain Tile frame bytes",
	} {
		if !strings.Contains(client, want) {
			t.Errorf("client trace lacks %q:\n%s", want, client)
		}
	}
	server := strings.Join(sl.all(), "\n")
	for _, want := range []string{"recv request Ask frame id", "send response String frame id", "recv plain Tile frame bytes"} {
		if !strings.Contains(server, want) {
			t.Errorf("server trace lacks %q:\n%s", want, server)
		}
	}
}

// wireFrameSize is a typed buffer's whole frame: header, id, type, length,
// data.
func wireFrameSize(typ string, n int) int { return 5 + 1 + len(typ) + 4 + n }

// TestTraceLogger: without a Trace, a Logger enabled at LevelTrace gets a
// record per message; at Debug it gets none.
func TestTraceLogger(t *testing.T) {
	for _, level := range []slog.Level{LevelTrace, slog.LevelDebug} {
		var buf syncBuffer
		co := ClientOptions{ConnOptions: fastOpts()}
		co.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))
		srv := startServer(t, transports[1], ServerOptions{ConnOptions: fastOpts()})
		c := startClient(t, transports[1], srv, co)
		noErr(t, c.Send(testCtx(t), "hello"))
		noErr(t, c.Close())
		out := buf.String()
		has := hasLine(out, `msg="sockhop: sending"`, `type=String kind=plain binary=true size=`) &&
			hasLine(out, `msg="sockhop: received"`, `type=Object kind=response binary=false`, `protocol=true`)
		if has != (level == LevelTrace) {
			t.Errorf("level %v: trace records present %v:\n%s", level, has, out)
		}
	}
}

// hasLine reports whether one line of out contains every part.
func hasLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
