package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// role is a library server in the test process doing what the recorded
// server's application did in one transcript (its "steps"), so that replay
// compares the Go library's wire behaviour with Node's.
type role struct {
	file   string
	opts   sockhop.ServerOptions
	app    func(ctx context.Context, m *sockhop.Message) error
	replay []string // extra replay flags
}

// background runs fn for the rest of the test: a request from the server
// waits for the client's answer, which must not hold up the handler.
type background struct{ wg sync.WaitGroup }

func (b *background) do(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

// TestReplayVectorsLibraryRoles: every transcript whose server was a 2.x
// Node library replays against this library set up and driven like it,
// with no difference. This is where the Go side is meant to behave like
// Node on the wire: handshakes, replies, transitions, frames, the cut of a
// peer that answers no pings, a server closing a session.
func TestReplayVectorsLibraryRoles(t *testing.T) {
	var bg background
	defer bg.wg.Wait()
	request := func(s *sockhop.Session, v any) {
		bg.do(func() {
			ctx, cancel := context.WithTimeout(s.Context(), testWait)
			defer cancel()
			_, _ = s.Request(ctx, v) // the client's answer, or the session's end
		})
	}
	echoQ := func(ctx context.Context, m *sockhop.Message) error {
		if m.Type == "String" && m.IsRequest() {
			if err := m.Reply(ctx, map[string]string{"echo": "q"}); err != nil {
				return err
			}
			return m.Session().Send(ctx, []int{1, 2, 3})
		}
		return nil
	}
	var sessions atomic.Int64
	roles := []role{
		{file: "v2-v2-binary.json", app: func(ctx context.Context, m *sockhop.Message) error {
			s := m.Session()
			switch {
			case m.Type == "Object" && !m.IsRequest():
				return s.Send(ctx, "hi client")
			case m.Type == "Widget" && m.IsRequest():
				if err := m.Reply(ctx, map[string]int{"got": 7}); err != nil {
					return err
				}
				request(s, "question")
			case m.Type == "Buffer" && m.IsRequest():
				return m.Reply(ctx, "pong:"+string(m.Bytes()))
			case m.Type == "Blob" && m.IsRequest():
				if err := m.Reply(ctx, []byte("ack")); err != nil {
					return err
				}
				return s.SendTyped(ctx, "Frame", []byte{0x0a, 0x0b})
			}
			return nil
		}},
		{file: "v2-v2-client-no-binary.json", app: echoQ},
		{file: "v2-v2-server-no-binary.json", opts: sockhop.ServerOptions{ConnOptions: sockhop.ConnOptions{NoBinary: true}}, app: echoQ},
		{file: "v2compat-client-v2-server.json",
			opts: sockhop.ServerOptions{
				ConnOptions: sockhop.ConnOptions{HandshakeTimeout: 500 * time.Millisecond},
				OnHandshake: func(s *sockhop.Session, ok bool, _ error) {
					if !ok { // the recorded server sent a Buffer once its handshake timed out
						bg.do(func() { _ = s.Send(s.Context(), []byte("abc")) })
					}
				}},
			app: func(ctx context.Context, m *sockhop.Message) error {
				if m.IsRequest() {
					return m.Reply(ctx, "ok")
				}
				return nil
			}},
		{file: "v2-client-v2compat-server.json", opts: sockhop.ServerOptions{ConnOptions: sockhop.ConnOptions{CompatibilityMode: true}},
			app: func(ctx context.Context, m *sockhop.Message) error {
				if m.Type == "String" {
					return m.Session().Send(ctx, map[string]int{"y": 2})
				}
				return nil
			}},
		{file: "v2-v2-terminator-pair.json",
			opts: sockhop.ServerOptions{ConnOptions: sockhop.ConnOptions{CompatibilityMode: true, Terminator: "\r\n", RxTerminator: "\x00"}},
			app: func(ctx context.Context, m *sockhop.Message) error {
				return m.Session().Send(ctx, "b")
			},
			replay: []string{"--terminator", `\r\n`}},
		{file: "v1-client-v2-server.json", opts: sockhop.ServerOptions{ConnOptions: sockhop.ConnOptions{HandshakeTimeout: 500 * time.Millisecond}},
			app: func(ctx context.Context, m *sockhop.Message) error {
				if m.IsRequest() {
					if err := m.Reply(ctx, map[string]string{"v2_reply_to": m.Type}); err != nil {
						return err
					}
					request(m.Session(), "question")
				}
				return nil
			}},
		{file: "v2-v2-reconnect.json", opts: sockhop.ServerOptions{
			// The recorded server closed the first connection once it
			// was set up (binary both ways); the second one stays.
			OnBinaryMode: func(s *sockhop.Session, rx, _ bool) {
				if rx && sessions.Add(1) == 1 {
					bg.do(func() { _ = s.Close() })
				}
			}}},
		{file: "ping-timeout-server.json", opts: sockhop.ServerOptions{ConnOptions: sockhop.ConnOptions{CompatibilityMode: true, PingInterval: 100 * time.Millisecond}}},
		{file: "ping-v2-v2-binary.json", opts: sockhop.ServerOptions{ConnOptions: sockhop.ConnOptions{PingInterval: 100 * time.Millisecond}}},
	}
	// The same role with one reply changed: replay must notice.
	wrong := roles[0]
	wrong.file, wrong.app = "v2-v2-binary.json", func(ctx context.Context, m *sockhop.Message) error {
		if m.Type == "Widget" && m.IsRequest() {
			return m.Reply(ctx, map[string]int{"got": 8})
		}
		return roles[0].app(ctx, m)
	}
	wrongRun := func(t *testing.T, res result) {
		if res.code != 1 || !strings.Contains(res.stderr, `server message 5: the data differs: recorded binary response "Object" {"got":7}, got binary response "Object" {"got":8}`) {
			t.Errorf("a changed reply: exit %d, stderr %q", res.code, res.stderr)
		}
	}
	for i, r := range append(roles, wrong) {
		t.Run(strings.TrimSuffix(r.file, ".json"), func(t *testing.T) {
			o := r.opts
			o.Addr = "127.0.0.1:0"
			srv := sockhop.NewServer(o)
			if r.app != nil {
				srv.HandleDefault(r.app)
			}
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			args := append([]string{"replay", filepath.Join(vectorsDir, r.file), "--timeout", "3s", "--addr", srv.Addr().String()}, r.replay...)
			res := sockhopRun(t, "", args...)
			if i == len(roles) {
				wrongRun(t, res)
				return
			}
			if res.code != 0 {
				t.Errorf("exit %d, stdout %q, stderr %q; want no difference", res.code, res.stdout, res.stderr)
			}
		})
	}
}
