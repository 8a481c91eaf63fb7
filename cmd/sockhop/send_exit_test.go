package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// silentListener accepts connections and neither reads nor closes them
// until the test ends: a server whose application hangs.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, nc := range held {
				nc.Close()
			}
		}()
		for {
			nc, err := ln.Accept()
			if err != nil {
				<-stop
				return
			}
			held = append(held, nc)
		}
	}()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestSendNeedsConfirmedClose: bytes in a kernel buffer are not delivery.
// A server that accepts but never reads gets the message written, yet send
// exits 1 and says that the server did not confirm the close.
func TestSendNeedsConfirmedClose(t *testing.T) {
	addr := silentListener(t)
	r := sockhopRun(t, "", "send", "--compat", "--timeout", "3s", "--addr", addr, `"x"`)
	if r.code != 1 || !strings.Contains(r.stderr, "did not close its side") {
		t.Errorf("send to a server that never reads: exit %d, stderr %q; want 1 and the unconfirmed close named", r.code, r.stderr)
	}
	oneErrorLine(t, r)

	// Without --compat the handshake is never answered either, and
	// --timeout still bounds the run, close included.
	r = sockhopRun(t, "", "send", "--timeout", "1s", "--addr", addr, `"x"`)
	if r.code != 1 || !strings.Contains(r.stderr, "--timeout 1s ran out") {
		t.Errorf("send with handshake to a server that never reads: exit %d, stderr %q; want 1 and the timeout named", r.code, r.stderr)
	}
}

// TestSendThroughCut: a relay that cuts the connection inside the message
// means the server never got it; send must not exit 0.
func TestSendThroughCut(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0")
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", p.target[1], "--cut-after", "700")
	msg := `"` + strings.Repeat("x", 640) + `"`
	for i := range 3 {
		r := sockhopRun(t, "", append([]string{"send", msg}, sn.target...)...)
		if r.code != 1 {
			t.Errorf("run %d: send through a cut: exit %d, stderr %q; want 1", i, r.code, r.stderr)
		}
		oneErrorLine(t, r)
	}
	if n := p.count(map[string]any{"event": "receive"}); n != 0 {
		t.Errorf("serve received %d messages through the cut", n)
	}
	// The same message reaches the server directly, and send exits 0.
	if r := sockhopRun(t, "", append([]string{"send", msg}, p.target...)...); r.code != 0 || r.stderr != "" {
		t.Errorf("send directly: exit %d, stderr %q", r.code, r.stderr)
	}
	p.waitFor(t, "direct", map[string]any{"event": "receive", "type": "String"})
}

// TestSendRequestNoAnswer: a request to serve without --echo says that the
// server did not answer, how long we waited, and what to do.
func TestSendRequestNoAnswer(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0")
	r := sockhopRun(t, "", append([]string{"send", "--request", "--timeout", "1s", `"ping?"`}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "did not answer the request within") || !strings.Contains(r.stderr, "--echo") {
		t.Errorf("request to serve without --echo: exit %d, stderr %q; want 1, no answer and --echo named", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	p.waitFor(t, "request", map[string]any{"event": "receive", "type": "String", "request": true})
}

// TestMaxMessage: --max-message bounds what serve accepts and what send
// accepts as a reply. The server reads an oversized message before it
// refuses it, so only --request can tell the sender.
func TestMaxMessage(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0", "--echo", "--max-message", "200")
	big := `"` + strings.Repeat("y", 300) + `"`
	r := sockhopRun(t, "", append([]string{"send", "--request", big}, p.target...)...)
	if r.code != 1 {
		t.Errorf("request over serve's --max-message: exit %d, stderr %q; want 1", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	p.waitFor(t, "limit", map[string]any{"event": "error"})
	if n := p.count(map[string]any{"event": "receive"}); n != 0 {
		t.Errorf("serve received %d messages over its --max-message", n)
	}

	p = startServe(t, "--addr", "127.0.0.1:0", "--echo")
	r = sockhopRun(t, "", append([]string{"send", "--request", "--max-message", "200", big}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "exceeds MaxMessageSize (200 bytes)") {
		t.Errorf("reply over send's --max-message: exit %d, stderr %q; want 1 and the size named", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	r = sockhopRun(t, "", "send", "--max-message", "0", `"x"`)
	if r.code != 2 {
		t.Errorf("--max-message 0: exit %d, want 2", r.code)
	}
}

// fullBacklog returns the address of a TCP listener whose accept queue is
// full (backlog 0, one connection queued, nothing accepted): the kernel
// drops further SYNs, so connecting hangs until the client gives up.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue: connections that complete are queued; once one does
	// not complete within a moment, the queue is full.
	for i := 0; i < 8; i++ {
		nc, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { nc.Close() })
	}
	t.Skip("the kernel kept accepting connections into a backlog of 0; cannot make connecting hang here")
	return ""
}

// TestSendConnectTimeout: --connect-timeout bounds connecting, and the
// error says which limit ended the run.
func TestSendConnectTimeout(t *testing.T) {
	addr := fullBacklog(t)
	r := sockhopRun(t, "", "send", "--addr", addr, "--connect-timeout", "300ms", "--timeout", "5s", `"x"`)
	if r.code != 1 || !strings.Contains(r.stderr, "--connect-timeout 300ms") {
		t.Errorf("send to a listener that never completes a connect: exit %d, stderr %q; want 1 and --connect-timeout named", r.code, r.stderr)
	}
	oneErrorLine(t, r)
}

// TestSendFileOverLimit: a file larger than a default peer accepts is
// refused before anything is written (exit 1, the limit named), and serve
// receives nothing.
func TestSendFileOverLimit(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0")
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, make([]byte, 5<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r := sockhopRun(t, "", append([]string{"send", "--file", path}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "MaxSendSize") {
		t.Errorf("send --file of 5 MiB: exit %d, stderr %q; want 1 and the limit named", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	r = sockhopRun(t, "", append([]string{"send", `"after"`}, p.target...)...)
	if r.code != 0 {
		t.Fatalf("send after: exit %d, stderr %q", r.code, r.stderr)
	}
	p.waitFor(t, "the next message", map[string]any{"event": "receive", "type": "String"})
	if n := p.count(map[string]any{"event": "receive"}); n != 1 {
		t.Errorf("serve received %d messages, want only the small one", n)
	}
}
