package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// probeJSON runs `sockhop probe --json` with args and decodes its result.
func probeJSON(t *testing.T, args ...string) (result, probeResult) {
	t.Helper()
	r := sockhopRun(t, "", append([]string{"probe", "--json"}, args...)...)
	var res probeResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("probe %q: stdout %q is not one JSON object (%v); stderr %q", args, r.stdout, err, r.stderr)
	}
	return r, res
}

// goServer starts an in-process server with o (on 127.0.0.1:0 unless o
// has a Path) and returns the probe flags that reach it.
func goServer(t *testing.T, o sockhop.ServerOptions) (*sockhop.Server, []string) {
	t.Helper()
	if o.Addr == "" && o.Path == "" {
		o.Addr = "127.0.0.1:0"
	}
	srv := sockhop.NewServer(o)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if o.Path != "" {
		return srv, []string{"--unix", o.Path}
	}
	return srv, []string{"--addr", srv.Addr().String()}
}

// TestProbeGoServer probes servers of this library in each mode.
func TestProbeGoServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   sockhop.ConnOptions
		kind   string
		binary *bool
	}{
		{"default", sockhop.ConnOptions{}, kindSockhop2, boolPtr(true)},
		{"no binary", sockhop.ConnOptions{NoBinary: true}, kindSockhop2, boolPtr(false)},
		{"compat", sockhop.ConnOptions{CompatibilityMode: true}, kindSockhop1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handshakes := make(chan bool, 1)
			_, target := goServer(t, sockhop.ServerOptions{ConnOptions: tc.opts,
				OnHandshake: func(_ *sockhop.Session, ok bool, _ error) { handshakes <- ok }})
			r, res := probeJSON(t, target...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("probe: exit %d, stderr %q", r.code, r.stderr)
			}
			if res.Kind != tc.kind || !equalBool(res.GrantsBinary, tc.binary) || res.Transport != "tcp" || res.Addr != target[1] {
				t.Errorf("probe result %+v; want kind %s, grants_binary %v", res, tc.kind, fmtBool(tc.binary))
			}
			if res.PingsSent != 5 || res.PingsAnswered != 5 || res.PingP50us == nil || res.PingP99us == nil || *res.PingP50us > *res.PingP99us {
				t.Errorf("pings: %+v", res)
			}
			if tc.kind == kindSockhop2 {
				if res.LibraryVersion != sockhop.Version || len(res.NodeDefects) != 0 || len(res.Notes) != 0 {
					t.Errorf("library_version %q (want %q), node_defects %q, notes %q", res.LibraryVersion, sockhop.Version, res.NodeDefects, res.Notes)
				}
				// The probe answered the server's handshake: it succeeded.
				select {
				case ok := <-handshakes:
					if !ok {
						t.Error("the server's handshake failed")
					}
				case <-time.After(testWait):
					t.Error("no handshake reported by the server")
				}
			}
		})
	}
}

func boolPtr(v bool) *bool { return &v }

func equalBool(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func fmtBool(b *bool) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprint(*b)
}

// TestProbeUnixAndTLS probes over a Unix socket and over TLS.
func TestProbeUnixAndTLS(t *testing.T) {
	_, target := goServer(t, sockhop.ServerOptions{Path: filepath.Join(shortDir(t), "p.sock")})
	if r, res := probeJSON(t, target...); r.code != 0 || res.Kind != kindSockhop2 || res.Transport != "unix" {
		t.Errorf("probe over unix: exit %d, %+v", r.code, res)
	}

	cert, key := writeCert(t)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	_, target = goServer(t, sockhop.ServerOptions{TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}})
	if r, res := probeJSON(t, append(target, "--tls-ca", cert)...); r.code != 0 || res.Kind != kindSockhop2 || res.Transport != "tls" || !equalBool(res.GrantsBinary, boolPtr(true)) {
		t.Errorf("probe over TLS: exit %d, %+v, stderr %q", r.code, res, r.stderr)
	}
	if r, res := probeJSON(t, append(target, "--tls-insecure")...); r.code != 0 || res.Kind != kindSockhop2 {
		t.Errorf("probe over TLS, not verifying: exit %d, %+v", r.code, res)
	}
	// Plain text to a TLS server: connected, but not Sockhop.
	if r, res := probeJSON(t, append(target, "--timeout", "2s")...); r.code != 0 || res.Kind != kindNotSockhop {
		t.Errorf("probe without TLS: exit %d, %+v", r.code, res)
	}
	// TLS to a server that does not trust our CA... rather: an unknown CA.
	r, res := probeJSON(t, append(target, "--tls")...)
	if r.code != 1 || res.Kind != kindUnreachable || !strings.Contains(r.stderr, "TLS") {
		t.Errorf("probe with an untrusted certificate: exit %d, %+v, stderr %q", r.code, res, r.stderr)
	}
	oneErrorLine(t, r)
}

// fakePeer accepts TCP connections and runs serve on each until the test
// ends.
func fakePeer(t *testing.T, serve func(net.Conn)) []string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return []string{"--addr", ln.Addr().String()}
}

// TestProbeNotSockhop: an echo server, a silent one and one that answers
// something else are all told apart from Sockhop, with exit code 0.
func TestProbeNotSockhop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		note  string
	}{
		{"echo", func(nc net.Conn) { _, _ = io.Copy(nc, nc) }, "echoes"},
		{"silent", func(nc net.Conn) { _, _ = io.Copy(io.Discard, nc) }, "answered neither"},
		{"http", func(nc net.Conn) {
			_, _ = nc.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			nc.Close()
		}, "not Sockhop"},
		{"closes", func(nc net.Conn) { nc.Close() }, "closed the connection"},
		{"json", func(nc net.Conn) { _, _ = nc.Write([]byte(`{"hello":"world"}` + "\n")); _, _ = io.Copy(io.Discard, nc) }, "not a Sockhop message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := fakePeer(t, tc.serve)
			start := time.Now()
			r, res := probeJSON(t, append(target, "--timeout", "500ms")...)
			took := time.Since(start)
			if r.code != 0 || r.stderr != "" || res.Kind != kindNotSockhop || res.PingsSent != 0 || len(res.NodeDefects) != 0 {
				t.Errorf("exit %d, stderr %q, %+v; want exit 0 and not-sockhop", r.code, r.stderr, res)
			}
			if !strings.Contains(strings.Join(res.Notes, "; "), tc.note) {
				t.Errorf("notes %q do not say %q", res.Notes, tc.note)
			}
			if took > 3*time.Second {
				t.Errorf("probe took %s with --timeout 500ms", took)
			}
		})
	}
}

func TestProbeUnreachable(t *testing.T) {
	for _, target := range [][]string{
		{"--addr", freeAddr(t)},
		{"--unix", filepath.Join(shortDir(t), "none.sock")},
	} {
		r, res := probeJSON(t, target...)
		if r.code != 1 || res.Kind != kindUnreachable || !strings.Contains(r.stderr, "cannot connect") {
			t.Errorf("probe %v: exit %d, %+v, stderr %q; want exit 1, unreachable", target, r.code, res, r.stderr)
		}
		oneErrorLine(t, r)
		// Readable output: nothing on stdout, the error on stderr.
		r = sockhopRun(t, "", append([]string{"probe"}, target...)...)
		if r.code != 1 || !strings.Contains(r.stdout, `"unreachable"`) {
			t.Errorf("probe %v (stdout a pipe, so JSON): exit %d, stdout %q", target, r.code, r.stdout)
		}
	}
}

// nodeDir is the Node interop peer (a real Sockhop 1.8.4).
var nodeDir = filepath.Join("..", "..", "internal", "interop", "node")

// requireNodePeer makes sure the Node peer can run: node and npm on PATH
// (the test fails without them, it does not skip), and the pinned
// sockhop@1.8.4 installed with npm ci when it is missing.
func requireNodePeer(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found on PATH (%v): this test runs a real Sockhop 1.8.4 server (internal/interop/node/peer.js)", tool, err)
		}
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "sockhop", "package.json")); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = nodeDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", nodeDir, err, out)
		}
	}
}

// startNodeServer runs `node peer.js server` on a free port and returns
// the probe flags for it and its output so far. Like the interop tests, it
// installs the peer with npm ci when needed, and fails without node.
func startNodeServer(t *testing.T) ([]string, func() string) {
	t.Helper()
	requireNodePeer(t)
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	n := runNodePeer(t, "server", port)
	n.wait(t, `"listening"`)
	return []string{"--addr", net.JoinHostPort("127.0.0.1", port)}, n.output
}

// TestProbeNode1x probes a real Sockhop 1.8.4 server: no handshake, but it
// answers pings, and its defects are listed. It must not crash it.
func TestProbeNode1x(t *testing.T) {
	target, output := startNodeServer(t)
	r, res := probeJSON(t, target...)
	if r.code != 0 || res.Kind != kindSockhop1 || res.GrantsBinary != nil || res.LibraryVersion != "" {
		t.Fatalf("probe: exit %d, %+v, stderr %q; want sockhop1-or-compat", r.code, res, r.stderr)
	}
	if res.PingsAnswered != 5 || res.PingP50us == nil {
		t.Errorf("pings: %+v", res)
	}
	defects := strings.Join(res.NodeDefects, "\n")
	for _, want := range []string{"1.x has no handshake", "Buffer", "14.2", "14.3", "14.4"} {
		if !strings.Contains(defects, want) {
			t.Errorf("node_defects do not mention %q:\n%s", want, defects)
		}
	}
	// The 1.x application got our handshake as a request and answered it.
	if !strings.Contains(strings.Join(res.Notes, "; "), "ordinary request") {
		t.Errorf("notes %q do not say the handshake was answered as a request", res.Notes)
	}
	r = sockhopRun(t, "", append([]string{"probe"}, target...)...) // a second probe: the peer is still up
	if r.code != 0 {
		t.Errorf("second probe: exit %d, stderr %q", r.code, r.stderr)
	}
	time.Sleep(100 * time.Millisecond)
	if out := output(); strings.Contains(out, `"fatal"`) || strings.Contains(out, `"error"`) {
		t.Errorf("the node peer reported a problem:\n%s", out)
	}
}

// TestProbeReadable checks probe's output for people.
func TestProbeReadable(t *testing.T) {
	p50, p99 := int64(180), int64(1410)
	res := probeResult{Addr: "127.0.0.1:50000", Transport: "tcp", Kind: kindSockhop2, LibraryVersion: "2.1.0", ProtocolVersion: 2.0,
		GrantsBinary: boolPtr(true), PingsSent: 5, PingsAnswered: 5, PingP50us: &p50, PingP99us: &p99, NodeDefects: nodeDefectsV2[:1]}
	want := `127.0.0.1:50000 (tcp): Sockhop 2.x, library 2.1.0, protocol 2, grants binary mode
ping: 5 of 5 answered, round trip p50 180µs, p99 1.41ms
It looks like the Node.js reference (no "+go" in its version); its known defects and what this library does about them:
  - ` + nodeDefectsV2[0] + "\n"
	if got := res.readable(); got != want {
		t.Errorf("readable:\n%s\nwant:\n%s", got, want)
	}
	res = probeResult{Addr: "/tmp/s.sock", Transport: "unix", Kind: kindNotSockhop, Notes: []string{"it echoes what it receives"}}
	want = "/tmp/s.sock (unix): not Sockhop\n  note: it echoes what it receives\n"
	if got := res.readable(); got != want {
		t.Errorf("readable:\n%s\nwant:\n%s", got, want)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		n, pct int
		want   time.Duration
	}{{100, 50, 50}, {100, 99, 99}, {5, 50, 3}, {5, 99, 5}, {1, 99, 1}, {2, 50, 1}} {
		if got := percentile(d[:tc.n], tc.pct); got != tc.want {
			t.Errorf("p%d of 1..%d = %d, want %d", tc.pct, tc.n, got, tc.want)
		}
	}
}
