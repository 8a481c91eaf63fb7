package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
	"github.com/sockhop/sockhop-go/internal/wire"
)

// startSniff starts `sockhop sniff --json` with args and waits for it to
// listen; target is its address for a client.
func startSniff(t *testing.T, args ...string) *serveProc {
	t.Helper()
	return startListening(t, "sniff", args)
}

// count returns how many events so far have every key and value of want.
func (p *serveProc) count(want map[string]any) int {
	n := 0
	for _, ev := range p.snapshot() {
		if matches(ev, want) {
			n++
		}
	}
	return n
}

// noErrors fails the test for any event naming a problem.
func (p *serveProc) noErrors(t *testing.T, events ...string) {
	t.Helper()
	for _, ev := range p.snapshot() {
		for _, name := range events {
			if ev["event"] == name {
				t.Errorf("unexpected event %v", ev)
			}
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

// startClient starts an in-process client against target (--addr or
// --unix and its value) and waits for its handshake.
func startClient(t *testing.T, target []string) *sockhop.Client {
	t.Helper()
	o := sockhop.ClientOptions{}
	if target[0] == "--unix" {
		o.Path = target[1]
	} else {
		o.Addr = target[1]
	}
	c := sockhop.NewClient(o)
	t.Cleanup(func() { c.Close() })
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatalf("client start through sniff: %v", err)
	}
	return c
}

// exchange runs the requests of the sniff tests through c (against serve
// --echo) and checks that each comes back unchanged.
func exchange(t *testing.T, c *sockhop.Client) {
	t.Helper()
	ctx := testCtx(t)
	widget := `{"id":7,"name":"sprocket"}`
	m, err := c.Request(ctx, sockhop.Named{Type: "Widget", Data: json.RawMessage(widget)})
	if err != nil || m.Type != "Widget" || string(m.JSON()) != widget {
		t.Fatalf("Widget request: %v, %v; want the Widget back", m, err)
	}
	tile := []byte{0, 1, 2, 0xff}
	m, err = c.RequestTyped(ctx, "Tile", tile)
	if err != nil || m.Type != "Tile" || !bytes.Equal(m.Bytes(), tile) {
		t.Fatalf("Tile request: %v, %v; want the Tile back", m, err)
	}
	m, err = c.Request(ctx, []byte("hello"))
	if err != nil || m.Type != "Buffer" || string(m.Bytes()) != "hello" {
		t.Fatalf("Buffer request: %v, %v; want the Buffer back", m, err)
	}
}

// TestSniffGoPeers relays a Go client and `sockhop serve --echo` and checks
// what sniff decoded, in both directions, both modes.
func TestSniffGoPeers(t *testing.T) {
	srv := startServe(t, "--addr", "127.0.0.1:0", "--echo")
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", srv.target[1])
	c := startClient(t, sn.target)
	exchange(t, c)
	if err := c.Send(testCtx(t), "plain text"); err != nil {
		t.Fatal(err)
	}
	srv.waitFor(t, "plain", map[string]any{"event": "receive", "type": "String", "data": "plain text"})
	c.Close()

	for _, dir := range []string{"c2s", "s2c"} {
		sn.waitFor(t, dir+" handshake", map[string]any{"event": "message", "conn": 1, "dir": dir, "mode": "json", "kind": "request",
			"type": "SockhopHandshake", "protocol": "handshake", "library_version": sockhop.Version, "binary": true})
		sn.waitFor(t, dir+" handshake reply", map[string]any{"event": "message", "dir": dir, "mode": "json", "kind": "response",
			"protocol": "handshake-reply", "binary": true, "data": map[string]any{"allow_binary_mode": true}})
		sn.waitFor(t, dir+" transition", map[string]any{"event": "message", "dir": dir, "mode": "json",
			"type": "SockhopBinaryModeTransition", "protocol": "transition", "size": 49})
		sn.waitFor(t, dir+" close", map[string]any{"event": "close", "conn": 1, "dir": dir, "reason": "eof"})
	}
	req := sn.waitFor(t, "Widget request", map[string]any{"event": "message", "dir": "c2s", "mode": "binary", "kind": "request",
		"type": "Widget", "size": 78, "data": map[string]any{"id": 7, "name": "sprocket"}})
	sn.waitFor(t, "Widget response", map[string]any{"event": "message", "dir": "s2c", "mode": "binary", "kind": "response",
		"type": "Widget", "id": req["id"], "data": map[string]any{"id": 7, "name": "sprocket"}})
	for _, dir := range []string{"c2s", "s2c"} {
		sn.waitFor(t, dir+" Tile", map[string]any{"event": "message", "dir": dir, "mode": "binary", "type": "Tile",
			"base64": "AAEC/w==", "data_size": 4})
		sn.waitFor(t, dir+" Buffer", map[string]any{"event": "message", "dir": dir, "mode": "binary", "type": "Buffer",
			"base64": "aGVsbG8="})
	}
	sn.waitFor(t, "plain", map[string]any{"event": "message", "dir": "c2s", "mode": "binary", "kind": "plain", "type": "String", "data": "plain text"})
	sn.noErrors(t, "undecodable", "stopped", "error")
	srv.noErrors(t, "error")
	// What each side printed, in the order sniff saw it, for the log.
	for _, ev := range sn.snapshot() {
		if ev["event"] == "message" {
			t.Logf("%s %s %s %v %v", ev["dir"], ev["mode"], ev["kind"], ev["type"], ev["protocol"])
		}
	}
}

// TestSniffFaults: with every fault option the Go peers still handshake
// and complete requests through sniff, and sniff still decodes.
func TestSniffFaults(t *testing.T) {
	srv := startServe(t, "--addr", "127.0.0.1:0", "--echo")
	for _, faults := range [][]string{
		{"--split", "1"},
		{"--coalesce", "20ms"},
		{"--delay", "2ms", "--split", "3"},
	} {
		t.Run(strings.Join(faults, " "), func(t *testing.T) {
			sn := startSniff(t, append([]string{"--listen", "127.0.0.1:0", "--upstream", srv.target[1]}, faults...)...)
			c := startClient(t, sn.target)
			if !c.State().TxBinary {
				t.Errorf("client not in binary mode through sniff %v: %+v", faults, c.State())
			}
			exchange(t, c)
			c.Close()
			sn.waitFor(t, "Widget response", map[string]any{"event": "message", "dir": "s2c", "mode": "binary", "kind": "response", "type": "Widget"})
			for _, dir := range []string{"c2s", "s2c"} {
				sn.waitFor(t, dir+" transition", map[string]any{"event": "message", "dir": dir, "protocol": "transition"})
				sn.waitFor(t, dir+" close", map[string]any{"event": "close", "dir": dir, "reason": "eof"})
			}
			sn.noErrors(t, "undecodable", "stopped", "error")
		})
	}
}

// rawStreams are the bytes of one scripted conversation: Sockhop messages
// in JSON mode, a transition, frames (one large), and bytes that are not
// Sockhop.
func rawStreams(t *testing.T) (c2s, s2c []byte) {
	t.Helper()
	frame := func(dst []byte, m *wire.Message) []byte {
		b, err := wire.AppendFrame(dst, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	lf := []byte("\n")
	hs := &wire.Message{Type: wire.TypeHandshake, Kind: wire.Request, ID: wire.NewUUID(), Data: wire.MarshalHandshake("2.1.0", true)}
	transition := &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}
	big := bytes.Repeat([]byte{0xab}, 80<<10) // over 64 KiB: read into a buffer of its own

	c2s = wire.AppendJSONLine(nil, hs, lf)
	c2s = wire.AppendJSONLine(c2s, &wire.Message{Type: "String", Data: []byte(`"before"`)}, lf)
	c2s = wire.AppendJSONLine(c2s, transition, lf)
	c2s = frame(c2s, &wire.Message{Type: "Widget", Kind: wire.Request, ID: wire.NewUUID(), Data: []byte(`{"id":7}`)})
	c2s = frame(c2s, &wire.Message{Type: "Tile", Bytes: true, Data: []byte{0, 1, 2, 0xff}})
	c2s = frame(c2s, &wire.Message{Type: "Buffer", Bytes: true, Data: big})
	c2s = frame(c2s, &wire.Message{Type: "Object", Data: []byte(`{"last":true}`)})

	s2c = []byte("\x00\x01not sockhop\n")
	s2c = wire.AppendJSONLine(s2c, hs, lf)
	s2c = wire.AppendJSONLine(s2c, transition, lf)
	s2c = frame(s2c, &wire.Message{Type: "Widget", Kind: wire.Response, ID: wire.NewUUID(), Data: []byte(`{"id":8}`)})
	s2c = append(s2c, 6, 0, 0, 0, 99, 1, 'X', 0, 0, 0, 0) // a frame with an unknown message id
	s2c = frame(s2c, &wire.Message{Type: "Object", Data: []byte(`{"last":true}`)})
	return c2s, s2c
}

// writeChunks writes b in random pieces.
func writeChunks(w io.Writer, b []byte, rng *rand.Rand) error {
	for len(b) > 0 {
		k := min(len(b), 1+rng.IntN(3000))
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

// rawUpstream is a TCP server that records what it receives and writes
// send to each connection.
type rawUpstream struct {
	ln   net.Listener
	got  chan []byte // everything one connection sent until its FIN
	send []byte
	wg   sync.WaitGroup
}

func startRawUpstream(t *testing.T, send []byte) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, got: make(chan []byte, 4), send: send}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(testWait))
				rng := rand.New(rand.NewPCG(2, 3))
				if writeChunks(nc, u.send, rng) == nil {
					_ = nc.(*net.TCPConn).CloseWrite()
				}
				b, _ := io.ReadAll(nc)
				u.got <- b
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

// rawClient sends c2s to addr in random pieces, half-closes and returns
// everything it received until the peer's FIN.
func rawClient(t *testing.T, addr string, c2s []byte) []byte {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(testWait))
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(nc)
		got <- b
	}()
	if err := writeChunks(nc, c2s, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	_ = nc.(*net.TCPConn).CloseWrite()
	return <-got
}

// TestSniffForwardsUnchanged: the bytes of a scripted conversation, valid
// or not, cross sniff unchanged in both directions with every fault
// option, and sniff decodes each direction, switching at the exact byte.
func TestSniffForwardsUnchanged(t *testing.T) {
	c2s, s2c := rawStreams(t)
	for _, faults := range [][]string{
		nil,
		{"--split", "1"},
		{"--coalesce", "20ms"},
		{"--split", "7", "--coalesce", "5ms", "--delay", "1ms"},
	} {
		t.Run(strings.Join(faults, " "), func(t *testing.T) {
			up := startRawUpstream(t, s2c)
			sn := startSniff(t, append([]string{"--listen", "127.0.0.1:0", "--upstream", up.ln.Addr().String()}, faults...)...)
			gotS2C := rawClient(t, sn.target[1], c2s)
			var gotC2S []byte
			select {
			case gotC2S = <-up.got:
			case <-time.After(testWait):
				t.Fatal("upstream got no FIN")
			}
			if !bytes.Equal(gotC2S, c2s) {
				t.Errorf("upstream received %d bytes, differing from the %d sent", len(gotC2S), len(c2s))
			}
			if !bytes.Equal(gotS2C, s2c) {
				t.Errorf("client received %d bytes, differing from the %d sent", len(gotS2C), len(s2c))
			}
			sn.waitFor(t, "c2s close", map[string]any{"event": "close", "dir": "c2s", "bytes": len(c2s), "reason": "eof"})
			sn.waitFor(t, "s2c close", map[string]any{"event": "close", "dir": "s2c", "bytes": len(s2c), "reason": "eof"})
			for _, want := range []map[string]any{
				{"dir": "c2s", "mode": "json", "protocol": "handshake", "library_version": "2.1.0"},
				{"dir": "c2s", "mode": "json", "type": "String", "data": "before"},
				{"dir": "c2s", "mode": "binary", "kind": "request", "type": "Widget", "data": map[string]any{"id": 7}},
				{"dir": "c2s", "mode": "binary", "kind": "plain", "type": "Tile", "base64": "AAEC/w=="},
				{"dir": "c2s", "mode": "binary", "type": "Buffer", "data_size": 80 << 10, "size": 5 + 1 + 6 + 4 + 80<<10, "truncated": true},
				{"dir": "c2s", "mode": "binary", "type": "Object", "data": map[string]any{"last": true}},
				{"dir": "s2c", "mode": "json", "protocol": "handshake"},
				{"dir": "s2c", "mode": "json", "protocol": "transition"},
				{"dir": "s2c", "mode": "binary", "kind": "response", "type": "Widget"},
				{"dir": "s2c", "mode": "binary", "type": "Object", "data": map[string]any{"last": true}},
			} {
				want["event"] = "message"
				sn.waitFor(t, fmt.Sprint(want), want)
			}
			sn.waitFor(t, "garbage line", map[string]any{"event": "undecodable", "dir": "s2c", "mode": "json", "size": 14,
				"hex": hex.EncodeToString([]byte("\x00\x01not sockhop\n"))})
			sn.waitFor(t, "unknown frame id", map[string]any{"event": "undecodable", "dir": "s2c", "mode": "binary", "size": 11})
			if n := sn.count(map[string]any{"event": "message"}); n != 11 {
				t.Errorf("sniff decoded %d messages, want 11", n)
			}
			sn.noErrors(t, "stopped", "error")
		})
	}
}

// TestSniffTerminator decodes JSON lines ended by another terminator, and
// frames after the transition.
func TestSniffTerminator(t *testing.T) {
	up := startRawUpstream(t, nil)
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", up.ln.Addr().String(), "--terminator", `\r\n`)
	crlf := []byte("\r\n")
	c2s := wire.AppendJSONLine(nil, &wire.Message{Type: "String", Data: []byte(`"a"`)}, crlf)
	c2s = wire.AppendJSONLine(c2s, &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}, crlf)
	c2s, _ = wire.AppendFrame(c2s, &wire.Message{Type: "Number", Data: []byte("13")}) // 0d 0a can appear in frames
	rawClient(t, sn.target[1], c2s)
	if got := <-up.got; !bytes.Equal(got, c2s) {
		t.Errorf("upstream got %q, want %q", got, c2s)
	}
	sn.waitFor(t, "line", map[string]any{"event": "message", "mode": "json", "type": "String", "data": "a", "size": 30})
	sn.waitFor(t, "frame", map[string]any{"event": "message", "mode": "binary", "type": "Number", "data": 13})
	sn.noErrors(t, "undecodable", "stopped")
	if r := sockhopRun(t, "", "sniff", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--terminator", `\q`); r.code != 2 {
		t.Errorf("--terminator \\q: exit %d, want 2", r.code)
	}
}

// TestSniffGarbageClient: a client that does not speak Sockhop has its
// bytes forwarded and shown; after a message over --max-message the
// direction is no longer decoded but still forwarded.
func TestSniffGarbageClient(t *testing.T) {
	srv := startServe(t, "--addr", "127.0.0.1:0", "--compat")
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", srv.target[1], "--max-message", "64")
	nc, err := net.DialTimeout("tcp", sn.target[1], testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	long := strings.Repeat("x", 100)
	for _, line := range []string{"hello garbage\n", `{"type":"String","data":"after"}` + "\n", `{"type":"String","data":"` + long + `"}` + "\n", `{"type":"String","data":"unseen"}` + "\n"} {
		if _, err := nc.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	sn.waitFor(t, "garbage", map[string]any{"event": "undecodable", "conn": 1, "dir": "c2s", "mode": "json", "size": 14,
		"hex": hex.EncodeToString([]byte("hello garbage\n"))})
	sn.waitFor(t, "after", map[string]any{"event": "message", "dir": "c2s", "type": "String", "data": "after"})
	ev := sn.waitFor(t, "stopped", map[string]any{"event": "stopped", "dir": "c2s", "mode": "json"})
	if !strings.Contains(ev["error"].(string), "decoding stopped") {
		t.Errorf("stopped event %v", ev)
	}
	// serve got every line, the garbage too.
	srv.waitFor(t, "garbage", map[string]any{"event": "error"})
	srv.waitFor(t, "after", map[string]any{"event": "receive", "data": "after"})
	srv.waitFor(t, "long", map[string]any{"event": "receive", "data": long})
	srv.waitFor(t, "unseen", map[string]any{"event": "receive", "data": "unseen"})
	nc.Close()
	sn.waitFor(t, "close", map[string]any{"event": "close", "dir": "c2s", "reason": "eof"})
	if n := sn.count(map[string]any{"event": "stopped"}); n != 1 {
		t.Errorf("%d stopped events, want 1", n)
	}
	if n := sn.count(map[string]any{"event": "message", "data": "unseen"}); n != 0 {
		t.Error("sniff decoded a line after it stopped decoding")
	}
}

// TestSniffCutAfter: the connection is closed once the budget, counted
// over both directions, is forwarded; not a byte more crosses.
func TestSniffCutAfter(t *testing.T) {
	s2c := bytes.Repeat([]byte("s"), 60)
	up := startRawUpstream(t, s2c)
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", up.ln.Addr().String(), "--cut-after", "100")
	nc, err := net.DialTimeout("tcp", sn.target[1], testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(testWait))
	// Read the server's 60 bytes first, so that the order is known.
	got := make([]byte, 60)
	if _, err := io.ReadFull(nc, got); err != nil || !bytes.Equal(got, s2c) {
		t.Fatalf("client read %q, %v", got, err)
	}
	if _, err := nc.Write(bytes.Repeat([]byte("c"), 300)); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(nc)
	if len(rest) != 0 {
		t.Errorf("client got %d more bytes after the cut", len(rest))
	}
	select {
	case b := <-up.got:
		if want := bytes.Repeat([]byte("c"), 40); !bytes.Equal(b, want) {
			t.Errorf("upstream got %d bytes %q, want the 40 left of the budget", len(b), b)
		}
	case <-time.After(testWait):
		t.Fatal("upstream was not closed")
	}
	ev := sn.waitFor(t, "c2s close", map[string]any{"event": "close", "dir": "c2s", "bytes": 40})
	if !strings.Contains(ev["reason"].(string), "cut after 100 bytes") {
		t.Errorf("close event %v does not name the cut", ev)
	}
}

// TestSniffUnix relays Unix sockets on both sides.
func TestSniffUnix(t *testing.T) {
	dir := shortDir(t)
	srv := startServe(t, "--unix", filepath.Join(dir, "s.sock"), "--echo")
	sn := startSniff(t, "--listen-unix", filepath.Join(dir, "sniff.sock"), "--upstream-unix", srv.target[1])
	c := startClient(t, sn.target)
	exchange(t, c)
	c.Close()
	sn.waitFor(t, "open", map[string]any{"event": "open", "conn": 1, "remote": "unix", "upstream": srv.target[1]})
	sn.waitFor(t, "Widget", map[string]any{"event": "message", "dir": "s2c", "mode": "binary", "type": "Widget"})
	sn.waitFor(t, "close", map[string]any{"event": "close", "dir": "s2c", "reason": "eof"})
}

// TestSniffUpstreamDown: a client whose upstream cannot be reached is
// closed, with one error event.
func TestSniffUpstreamDown(t *testing.T) {
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", freeAddr(t))
	nc, err := net.DialTimeout("tcp", sn.target[1], testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(testWait))
	if b, err := io.ReadAll(nc); len(b) != 0 || err != nil {
		t.Errorf("client read %q, %v; want EOF", b, err)
	}
	ev := sn.waitFor(t, "error", map[string]any{"event": "error", "conn": 1})
	if !strings.Contains(ev["error"].(string), "upstream") {
		t.Errorf("error event %v", ev)
	}
}

// TestSniffSIGTERM: sniff closes its connections and exits 0 at once.
func TestSniffSIGTERM(t *testing.T) {
	srv := startServe(t, "--addr", "127.0.0.1:0")
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", srv.target[1])
	lost := make(chan error, 1)
	c := sockhop.NewClient(sockhop.ClientOptions{Addr: sn.target[1], OnDisconnect: func(_ *sockhop.Client, err error) { lost <- err }})
	defer c.Close()
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	silent, err := net.DialTimeout("tcp", sn.target[1], testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	sn.waitFor(t, "second open", map[string]any{"event": "open", "conn": 2})
	code, took := sn.stop(t)
	if code != 0 || took > time.Second {
		t.Errorf("sniff: exit %d after %s on SIGTERM; want 0 within 1s", code, took)
	}
	select {
	case <-lost:
	case <-time.After(testWait):
		t.Error("the client was not disconnected")
	}
	if sn.stderr.Len() != 0 {
		t.Errorf("stderr %q", sn.stderr.String())
	}
}

func TestSniffUsage(t *testing.T) {
	for _, args := range [][]string{
		{"sniff"},
		{"sniff", "--listen", "127.0.0.1:0"},
		{"sniff", "--upstream", "127.0.0.1:1"},
		{"sniff", "--listen", "127.0.0.1:0", "--listen-unix", "/tmp/x", "--upstream", "127.0.0.1:1"},
		{"sniff", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--split", "-1"},
		{"sniff", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--coalesce", "soon"},
		{"sniff", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "extra"},
		{"probe", "--addr", "127.0.0.1:1", "--unix", "/tmp/x"},
		{"probe", "--pings", "-1"},
		{"probe", "--timeout", "0s"},
		{"probe", "--tls-cert", "c.pem"},
	} {
		r := sockhopRun(t, "", args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("sockhop %q: exit %d, stdout %q; want exit 2 and no output", args, r.code, r.stdout)
		}
		oneErrorLine(t, r)
	}
	r := sockhopRun(t, "", "sniff", "--listen", "256.0.0.1:0", "--upstream", "127.0.0.1:1")
	if r.code != 1 {
		t.Errorf("sniff on a bad address: exit %d, want 1", r.code)
	}
	oneErrorLine(t, r)
	for _, args := range [][]string{{"sniff", "--help"}, {"help", "probe"}, {"help"}} {
		r := sockhopRun(t, "", args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Examples:\n  sockhop ") {
			t.Errorf("sockhop %q: exit %d, stderr %q, stdout without Examples:\n%s", args, r.code, r.stderr, r.stdout)
		}
	}
	r = sockhopRun(t, "", "help")
	if !strings.Contains(r.stdout, "  sniff ") || !strings.Contains(r.stdout, "  probe ") {
		t.Errorf("help does not list sniff and probe:\n%s", r.stdout)
	}
}

// TestSniffReadable checks sniff's output for people.
func TestSniffReadable(t *testing.T) {
	var buf bytes.Buffer
	r := &sniffReporter{w: &buf}
	yes := true
	str := func(s string) *string { return &s }
	n4, n26, total := 4, 26, int64(390)
	b64 := "AAEC/w=="
	at := time.Date(2026, 12, 3, 18, 30, 1, 123e6, time.Local)
	for _, ev := range []sniffEvent{
		{Event: "listening", Addr: "127.0.0.1:50001", Upstream: "127.0.0.1:50000"},
		{Event: "open", Conn: 1, Remote: "127.0.0.1:40000", Upstream: "127.0.0.1:50000"},
		{Event: "message", Conn: 1, Dir: "c2s", Mode: "json", Kind: "request", Type: str("SockhopHandshake"), ID: "0123456789abcdef", Size: 158, Protocol: "handshake", LibraryVersion: "2.1.0", Binary: &yes},
		{Event: "message", Conn: 1, Dir: "s2c", Mode: "json", Kind: "response", Type: str("Object"), ID: "0123456789abcdef", Size: 105, Protocol: "handshake-reply", Binary: &yes},
		{Event: "message", Conn: 1, Dir: "c2s", Mode: "json", Kind: "plain", Type: str("SockhopBinaryModeTransition"), Size: 49, Protocol: "transition"},
		{Event: "message", Conn: 1, Dir: "c2s", Mode: "binary", Kind: "request", Type: str("Widget"), ID: "fedcba9876543210", Size: 78, DataSize: &n26, Data: json.RawMessage(`{"id":7,"name":"sprocket"}`)},
		{Event: "message", Conn: 1, Dir: "c2s", Mode: "binary", Kind: "plain", Type: str("Tile"), Size: 18, DataSize: &n4, Base64: &b64, raw: []byte{0, 1, 2, 0xff}},
		{Event: "message", Conn: 1, Dir: "s2c", Mode: "json", Kind: "plain", Type: str("SockhopPing"), Size: 149, Protocol: "ping", PingID: "abc"},
		{Event: "message", Conn: 1, Dir: "s2c", Mode: "json", Kind: "plain", Size: 3, Data: json.RawMessage(`42`)},
		{Event: "undecodable", Conn: 1, Dir: "c2s", Mode: "json", Size: 14, Hex: "68656c6c6f", Truncated: true, Error: "sockhop: JSON line does not parse"},
		{Event: "warning", Conn: 1, Dir: "c2s", Warning: "JSON follows this direction's transition line"},
		{Event: "close", Conn: 1, Dir: "c2s", Bytes: &total, Reason: "eof"},
	} {
		ev.at = at
		r.emit(&ev)
	}
	want := `18:30:01.123 listening on 127.0.0.1:50001, relaying to 127.0.0.1:50000
18:30:01.123 [1] open from 127.0.0.1:40000 to 127.0.0.1:50000
18:30:01.123 [1] c2s json handshake v2.1.0 binary=true 158B id 01234567…
18:30:01.123 [1] s2c json handshake reply binary=true 105B id 01234567…
18:30:01.123 [1] c2s json transition -> binary 49B
18:30:01.123 [1] c2s binary request Widget 78B id fedcba98… {"id":7,"name":"sprocket"}
18:30:01.123 [1] c2s binary plain Tile 18B 4 bytes 000102ff
18:30:01.123 [1] s2c json ping abc 149B
18:30:01.123 [1] s2c json plain (no type) 3B 42
18:30:01.123 [1] c2s json UNDECODABLE 14B 68656c6c6f…: sockhop: JSON line does not parse
18:30:01.123 [1] c2s WARNING JSON follows this direction's transition line
18:30:01.123 [1] c2s closed after 390 bytes (eof)
`
	if buf.String() != want {
		t.Errorf("readable output:\n%s\nwant:\n%s", buf.String(), want)
	}
}
