package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/sockhop/sockhop-go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

// serveLines runs `serve` until the test ends and returns its event lines.
func serveLines(t *testing.T, url string) <-chan map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--nats", url, "--cluster", "cli", "--addr", "127.0.0.1:0"}, w, io.Discard)
		w.Close()
	}()
	lines := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				lines <- ev
			}
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
		for range lines {
		}
	})
	return lines
}

func next(t *testing.T, lines <-chan map[string]any, event string) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-lines:
			if ev["event"] == event {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q event", event)
		}
	}
}

func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	if code != 0 {
		t.Logf("sockhop-cluster %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String(), code
}

// serve joins the cluster; broadcast, sessions, send and request reach a
// client of it from another process's point of view (another NATS
// connection and node).
func TestCLI(t *testing.T) {
	url := startNATS(t)
	lines := serveLines(t, url)
	addr := next(t, lines, "listening")["addr"].(string)

	got := make(chan *sockhop.Message, 10)
	c := sockhop.NewClient(sockhop.ClientOptions{Addr: addr})
	c.HandleDefault(func(ctx context.Context, m *sockhop.Message) error {
		if m.IsRequest() {
			return m.Reply(ctx, sockhop.Named{Type: "Pong", Data: m.JSON()})
		}
		got <- m
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := next(t, lines, "join")["session"].(map[string]any)["id"].(string)

	recv := func() *sockhop.Message {
		select {
		case m := <-got:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("client got nothing")
			return nil
		}
	}
	if _, code := cli(t, "broadcast", "--nats", url, "--cluster", "cli", "--type", "Notice", `{"text":"hello"}`); code != 0 {
		t.Fatal("broadcast failed")
	}
	if m := recv(); m.Type != "Notice" || string(m.JSON()) != `{"text":"hello"}` {
		t.Fatalf("broadcast delivered %s %s", m, m.JSON())
	}

	out, code := cli(t, "sessions", "--nats", url, "--cluster", "cli", "--wait", "300ms")
	if code != 0 || !strings.Contains(out, `"id":"`+id+`"`) {
		t.Fatalf("sessions (exit %d) did not list %s:\n%s", code, id, out)
	}

	if _, code := cli(t, "send", "--nats", url, "--cluster", "cli", "--to", id, `[1,2]`); code != 0 {
		t.Fatal("send failed")
	}
	if m := recv(); m.Type != "Array" || string(m.JSON()) != `[1,2]` {
		t.Fatalf("send delivered %s", m)
	}

	out, code = cli(t, "request", "--nats", url, "--cluster", "cli", "--to", id, `"ping"`)
	var reply map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &reply) != nil || reply["type"] != "Pong" || reply["data"] != "ping" {
		t.Fatalf("request (exit %d) printed %q", code, out)
	}

	if _, code := cli(t, "send", "--nats", url, "--cluster", "cli", "--to", "nobody-1", "--wait", "50ms", `1`); code != 1 {
		t.Fatalf("send to an unknown id exited %d, want 1", code)
	}
}

func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate", "--cluster", "x"},
		{"broadcast", "--cluster", "x"},
		{"broadcast", "--cluster", "x", "not json"},
		{"send", "--cluster", "x", "1"},
		{"serve"},
	} {
		var errOut bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), "sockhop-cluster") {
			t.Errorf("%q: exit %d, %q", args, code, errOut.String())
		}
	}
}

// demo tells the whole story with nothing installed.
func TestDemo(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"demo"}, &out, &errOut); code != 0 {
		t.Fatalf("demo exited %d: %s\n%s", code, errOut.String(), out.String())
	}
	for _, want := range []string{
		`client 1 (on server 1) got "hello everyone" from server 2`,
		`client 3 (on server 3) got "hello everyone" from server 2`,
		`(on server 3): "hello back" from client 3`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
