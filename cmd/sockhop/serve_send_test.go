package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// sendCase is one `sockhop send` run against `sockhop serve --echo`.
type sendCase struct {
	name  string
	args  []string
	stdin string
	recv  []map[string]any // receive events serve must print
	reply string           // send's stdout
}

var sendCases = []sendCase{
	{name: "object", args: []string{`{"id": 1, "name": "obj"}`},
		recv: []map[string]any{{"type": "Object", "data": map[string]any{"id": 1, "name": "obj"}}}},
	{name: "string", args: []string{`"a string"`},
		recv: []map[string]any{{"type": "String", "data": "a string"}}},
	{name: "number", args: []string{"--", "-42.5"},
		recv: []map[string]any{{"type": "Number", "data": -42.5}}},
	{name: "array", args: []string{`[1,"two"]`},
		recv: []map[string]any{{"type": "Array", "data": []any{1, "two"}}}},
	{name: "boolean from stdin", stdin: "\n  true\n\n",
		recv: []map[string]any{{"type": "Boolean", "data": true}}},
	{name: "named", args: []string{`{"id":7}`, "--type", "Widget"},
		recv: []map[string]any{{"type": "Widget", "data": map[string]any{"id": 7}}}},
	{name: "buffer", args: []string{"--base64", "YnVmZmVy"},
		recv: []map[string]any{{"type": "Buffer", "base64": "YnVmZmVy"}}},
	{name: "typed buffer", args: []string{"--type", "Tile", "--base64", "AAEC/w=="},
		recv: []map[string]any{{"type": "Tile", "base64": "AAEC/w=="}}},
	{name: "request object", args: []string{"--request", `{"q":"echo?"}`},
		recv:  []map[string]any{{"type": "Object", "data": map[string]any{"q": "echo?"}, "request": true}},
		reply: `{"type":"Object","data":{"q":"echo?"}}` + "\n"},
	{name: "request named", args: []string{"--request", "--type", "Widget", `{"id":8}`},
		recv:  []map[string]any{{"type": "Widget", "request": true}},
		reply: `{"type":"Widget","data":{"id":8}}` + "\n"},
	{name: "request buffer", args: []string{"--request", "--base64", "cmVx"},
		recv:  []map[string]any{{"type": "Buffer", "base64": "cmVx", "request": true}},
		reply: `{"type":"Buffer","base64":"cmVx"}` + "\n"},
	{name: "request typed buffer", args: []string{"--request", "--type", "Tile", "--base64", "dGlsZQ=="},
		recv:  []map[string]any{{"type": "Tile", "base64": "dGlsZQ==", "request": true}},
		reply: `{"type":"Tile","base64":"dGlsZQ=="}` + "\n"},
	{name: "requests from stdin", args: []string{"--request"}, stdin: "1\n\"x\"\n",
		recv:  []map[string]any{{"type": "Number", "data": 1, "request": true}, {"type": "String", "data": "x", "request": true}},
		reply: `{"type":"Number","data":1}` + "\n" + `{"type":"String","data":"x"}` + "\n"},
}

// TestSendToServe runs every send case over TCP and over a Unix socket and
// checks what serve reported and what send printed.
func TestSendToServe(t *testing.T) {
	for _, tr := range []struct {
		name string
		args []string
	}{
		{"tcp", []string{"--addr", "127.0.0.1:0"}},
		{"unix", []string{"--unix", filepath.Join(shortDir(t), "s.sock")}},
	} {
		t.Run(tr.name, func(t *testing.T) {
			p := startServe(t, append(tr.args, "--echo")...)
			for _, tc := range sendCases {
				r := sockhopRun(t, tc.stdin, append(append([]string{"send"}, p.target...), tc.args...)...)
				if r.code != 0 || r.stderr != "" || r.stdout != tc.reply {
					t.Errorf("%s: exit %d, stderr %q, stdout %q; want 0, none, %q", tc.name, r.code, r.stderr, r.stdout, tc.reply)
				}
				for _, want := range tc.recv {
					want["event"] = "receive"
					ev := p.waitFor(t, tc.name, want)
					if _, isReq := want["request"]; !isReq && ev["request"] != nil {
						t.Errorf("%s: %v is marked as a request", tc.name, ev)
					}
				}
			}
			p.waitFor(t, "handshake", map[string]any{"event": "handshake", "session": 1, "success": true,
				"binary_rx": true, "binary_tx": true, "peer_version": sockhop.Version})
			remote := p.waitFor(t, "connect", map[string]any{"event": "connect", "session": 1})["remote"].(string)
			if (tr.name == "unix") != (remote == "unix") {
				t.Errorf("connect event remote %q over %s", remote, tr.name)
			}
			p.waitFor(t, "disconnect", map[string]any{"event": "disconnect", "session": len(sendCases)})
			if code, _ := p.stop(t); code != 0 {
				t.Errorf("serve exit %d on SIGTERM", code)
			}
			for _, ev := range p.snapshot() {
				// An echo to a send that closed before reading it is
				// reported as never written: true, and expected here.
				if msg, _ := ev["error"].(string); ev["event"] == "error" && !strings.Contains(msg, "never written in full") {
					t.Errorf("serve reported %v", ev)
				}
			}
		})
	}
}

func TestSendFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tile.bin")
	if err := os.WriteFile(file, []byte{0, 1, 2, 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--addr", "127.0.0.1:0")
	for _, typ := range []string{"Buffer", "Tile"} {
		r := sockhopRun(t, "", append([]string{"send", "--file", file, "--type", typ}, p.target...)...)
		if r.code != 0 {
			t.Errorf("send --file --type %s: exit %d, stderr %q", typ, r.code, r.stderr)
		}
		p.waitFor(t, typ, map[string]any{"event": "receive", "type": typ, "base64": "AAEC/w=="})
	}
}

// TestCompat: a --compat client and a --compat server talk JSON without a
// handshake.
func TestCompat(t *testing.T) {
	p := startServe(t, "--compat", "--echo", "--addr", "127.0.0.1:0")
	// Requests only: a plain message sent by a --compat client right before
	// its FIN can be lost by the library (see TestMessagesBeforeEOF).
	r := sockhopRun(t, "", append([]string{"send", "--compat", "--request", `{"v":1}`}, p.target...)...)
	if want := `{"type":"Object","data":{"v":1}}` + "\n"; r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("send --compat --request: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	p.waitFor(t, "request", map[string]any{"event": "receive", "type": "Object", "data": map[string]any{"v": 1}, "request": true})
	r = sockhopRun(t, "", append([]string{"send", "--compat", "--request", "--base64", "Y29tcGF0"}, p.target...)...)
	if want := `{"type":"Buffer","base64":"Y29tcGF0"}` + "\n"; r.code != 0 || r.stdout != want {
		t.Errorf("send --compat --request: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	for _, ev := range p.snapshot() {
		if ev["event"] == "handshake" {
			t.Errorf("handshake event in compatibility mode: %v", ev)
		}
	}
}

// TestHandshakeFallback: without --compat, send waits for a handshake a
// compatibility-mode server never answers, says so, and still delivers.
func TestHandshakeFallback(t *testing.T) {
	p := startServe(t, "--compat", "--addr", "127.0.0.1:0")
	r := sockhopRun(t, "", append([]string{"send", "--timeout", "1s", `"after the timeout"`}, p.target...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "did not answer the handshake") {
		t.Fatalf("send: exit %d, stderr %q; want 0 and a note on the handshake", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	p.waitFor(t, "message", map[string]any{"event": "receive", "type": "String", "data": "after the timeout"})
}

// TestTypedBufferNeedsBinary: a server that grants no binary mode cannot
// get a typed buffer; send says why and exits 1.
func TestTypedBufferNeedsBinary(t *testing.T) {
	p := startServe(t, "--no-binary", "--addr", "127.0.0.1:0")
	r := sockhopRun(t, "", append([]string{"send", "--type", "Tile", "--base64", "AAAA"}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "binary mode") {
		t.Errorf("send typed buffer: exit %d, stderr %q; want 1 and binary mode named", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	p.waitFor(t, "handshake", map[string]any{"event": "handshake", "success": true, "binary_rx": false, "binary_tx": false})
}

// TestV1Buffer: the object a Sockhop 1.x peer writes for a Buffer is shown
// as bytes and echoed as a Buffer.
func TestV1Buffer(t *testing.T) {
	p := startServe(t, "--compat", "--echo", "--addr", "127.0.0.1:0")
	nc, err := net.DialTimeout("tcp", p.target[1], testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(testWait))
	if _, err := nc.Write([]byte(`{"type":"Buffer","data":{"type":"Buffer","data":[120,121,122]}}` + "\n")); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "1.x Buffer", map[string]any{"event": "receive", "type": "Buffer", "base64": "eHl6"})
	line, err := bufio.NewReader(nc).ReadString('\n')
	if want := `{"type":"Buffer","data":"eHl6"}` + "\n"; err != nil || line != want {
		t.Errorf("echo: %q, %v; want %q", line, err, want)
	}
}

// TestServeSIGTERM: serve closes its sessions and exits 0 within a second.
func TestServeSIGTERM(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0")
	lost := make(chan error, 1)
	c := sockhop.NewClient(sockhop.ClientOptions{Addr: p.target[1], OnDisconnect: func(_ *sockhop.Client, err error) { lost <- err }})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "handshake", map[string]any{"event": "handshake", "success": true})
	// A peer that neither writes nor closes: serve must not wait for it.
	silent, err := net.DialTimeout("tcp", p.target[1], testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	p.waitFor(t, "silent peer", map[string]any{"event": "connect", "session": 2})
	code, took := p.stop(t)
	if code != 0 || took > time.Second {
		t.Errorf("serve: exit %d after %s on SIGTERM; want 0 within 1s", code, took)
	}
	select {
	case <-lost:
	case <-time.After(testWait):
		t.Error("the client was not disconnected")
	}
	p.waitFor(t, "disconnect", map[string]any{"event": "disconnect", "session": 1})
}

// TestTLS: serve with a certificate, send trusting it.
func TestTLS(t *testing.T) {
	cert, key := writeCert(t)
	p := startServe(t, "--addr", "127.0.0.1:0", "--echo", "--tls-cert", cert, "--tls-key", key)
	r := sockhopRun(t, "", append([]string{"send", "--tls-ca", cert, "--request", `"secret"`}, p.target...)...)
	if want := `{"type":"String","data":"secret"}` + "\n"; r.code != 0 || r.stdout != want {
		t.Errorf("send over TLS: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	r = sockhopRun(t, "", append([]string{"send", "--timeout", "2s", `"in clear"`}, p.target...)...)
	if r.code != 1 {
		t.Errorf("send without TLS to a TLS server: exit %d, want 1", r.code)
	}
	oneErrorLine(t, r)

	// With --tls-client-ca the server wants a client certificate.
	p = startServe(t, "--addr", "127.0.0.1:0", "--echo", "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", cert)
	r = sockhopRun(t, "", append([]string{"send", "--tls-ca", cert, "--tls-cert", cert, "--tls-key", key, "--request", "1"}, p.target...)...)
	if want := `{"type":"Number","data":1}` + "\n"; r.code != 0 || r.stdout != want {
		t.Errorf("send with a client certificate: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	r = sockhopRun(t, "", append([]string{"send", "--timeout", "2s", "--tls-ca", cert, "--request", "2"}, p.target...)...)
	if r.code != 1 {
		t.Errorf("send without a client certificate: exit %d, want 1", r.code)
	}
	oneErrorLine(t, r)
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sockhop test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestMessagesBeforeEOF expects serve to report every plain message that
// arrived before the sender's FIN: many lines from stdin, and single
// messages from --compat clients (no handshake, so the FIN follows at
// once). It caught the library's dispatcher returning on close without
// draining what it had read, which lost 1-3% of 2,000 lines.
func TestMessagesBeforeEOF(t *testing.T) {
	const n = 500
	p := startServe(t, "--addr", "127.0.0.1:0")
	var in strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&in, "%d\n", i)
	}
	if r := sockhopRun(t, in.String(), append([]string{"send"}, p.target...)...); r.code != 0 {
		t.Fatalf("send: exit %d, stderr %q", r.code, r.stderr)
	}
	for i := 1; i <= n; i++ {
		p.waitFor(t, fmt.Sprint("line ", i), map[string]any{"event": "receive", "data": i})
	}
	for i := 1; i <= 20; i++ {
		if r := sockhopRun(t, "", append([]string{"send", "--compat", fmt.Sprint(n + i)}, p.target...)...); r.code != 0 {
			t.Fatalf("send --compat: exit %d, stderr %q", r.code, r.stderr)
		}
		p.waitFor(t, fmt.Sprint("compat ", i), map[string]any{"event": "receive", "data": n + i})
	}
}

// TestServeLimits: serve's flags for untrusted networks reach the library:
// --max-per-ip refuses a second connection from one address, --min-rate
// cuts a peer that trickles a message in, and --harden cuts a message
// over 64 KiB sent before the handshake; each cut says why.
func TestServeLimits(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0", "--max-per-ip", "1", "--min-rate", "1000", "--message-grace", "200ms")
	addr := p.target[1]
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	p.waitFor(t, "the first connection", map[string]any{"event": "connect", "session": 1})
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	ev := p.waitFor(t, "the refusal", map[string]any{"event": "error"})
	if !strings.Contains(ev["error"].(string), "MaxConnectionsPerIP (1)") {
		t.Errorf("refusal: %v", ev)
	}
	go func() {
		for _, b := range []byte(`{"type":"String","data":"slow`) {
			if _, err := first.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	ev = p.waitFor(t, "the slow peer cut", map[string]any{"event": "disconnect", "session": 1})
	if !strings.Contains(fmt.Sprint(ev["error"]), "MinReadRate") {
		t.Errorf("slow peer's disconnect: %v", ev)
	}

	h := startServe(t, "--addr", "127.0.0.1:0", "--harden")
	raw, err := net.Dial("tcp", h.target[1])
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	go raw.Write([]byte(`{"type":"String","data":"` + strings.Repeat("b", 100<<10) + "\"}\n"))
	ev = h.waitFor(t, "the early large message cut", map[string]any{"event": "disconnect", "session": 1})
	if !strings.Contains(fmt.Sprint(ev["error"]), "MaxPreHandshakeSize (65536 bytes)") {
		t.Errorf("early large message's disconnect: %v", ev)
	}
}
