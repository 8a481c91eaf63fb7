package main

import (
	"bytes"
	"flag"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

func TestDemo(t *testing.T) {
	start := time.Now()
	r := sockhopRun(t, "", "demo")
	t.Logf("demo ran in %s:\n%s", time.Since(start).Round(time.Millisecond), r.stdout)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("demo: exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	steps := []string{"object", "buffer", "typed buffer", "remote callback", "broadcast", "verification", "compatibility"}
	if len(lines) != len(steps)+2 {
		t.Fatalf("demo printed %d lines, want a header, %d steps and a summary", len(lines), len(steps))
	}
	for i, name := range steps {
		l := lines[i+1]
		if !strings.HasPrefix(l, "step ") || !strings.Contains(l, " "+name+":") || !strings.HasSuffix(l, ": ok") {
			t.Errorf("step %d line %q does not report %q ok", i+1, l, name)
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], "all 7 steps observed") {
		t.Errorf("summary line %q", lines[len(lines)-1])
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"serve", "--bogus"},
		{"serve", "extra"},
		{"serve", "--tls-cert", "cert.pem"},
		{"serve", "--addr", "127.0.0.1:0", "--unix", "/tmp/x.sock"},
		{"send", "--timeout", "soon", "1"},
		{"send", "--timeout", "0s", "1"},
		{"send", "null"},
		{"send", "{bad"},
		{"send", "1", "2"},
		{"send", "--base64", "not base64!"},
		{"send", "--type", "SockhopPing", "1"},
		{"send", "--type", "Buffer", `"x"`},
		{"send", "--file", "x", "1"},
		{"send", "--compat", "--type", "Tile", "--base64", "AA=="},
		{"demo", "--fast"},
		{"help", "bogus"},
	} {
		r := sockhopRun(t, "", args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("sockhop %q: exit %d, stdout %q; want exit 2 and no output", args, r.code, r.stdout)
		}
		oneErrorLine(t, r)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"--help"}, {"help", "send"}, {"serve", "--help"}, {"send", "-h"}, {"demo", "--help"}, {"version", "--help"},
	} {
		r := sockhopRun(t, "", args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Examples:\n  sockhop ") {
			t.Errorf("sockhop %q: exit %d, stderr %q, stdout without Examples:\n%s", args, r.code, r.stderr, r.stdout)
		}
	}
	r := sockhopRun(t, "", "send", "--help")
	for _, f := range []string{"--addr HOST:PORT", "--unix PATH", "--type NAME", "--request", "--timeout", "--base64", "--file PATH", "--tls-ca FILE"} {
		if !strings.Contains(r.stdout, f) {
			t.Errorf("send --help does not show %s", f)
		}
	}
}

func TestVersion(t *testing.T) {
	r := sockhopRun(t, "", "version")
	if r.code != 0 || !strings.Contains(r.stdout, sockhop.Version) {
		t.Errorf("version: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestUnreachable(t *testing.T) {
	for _, target := range [][]string{
		{"--addr", freeAddr(t)},
		{"--unix", filepath.Join(shortDir(t), "none.sock")},
	} {
		r := sockhopRun(t, "", append([]string{"send", "--timeout", "2s", `"anyone?"`}, target...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "connect") {
			t.Errorf("send to %v: exit %d, stderr %q; want exit 1 and a connect error", target, r.code, r.stderr)
		}
		oneErrorLine(t, r)
	}
}

func TestServeAddressInUse(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0")
	r := sockhopRun(t, "", "serve", p.target[0], p.target[1])
	if r.code != 1 {
		t.Errorf("second serve on %s: exit %d, want 1", p.target[1], r.code)
	}
	oneErrorLine(t, r)
}

// TestParseInterspersed runs in-process: flags may follow DATA, and "--"
// keeps data that starts with a dash.
func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		typ  string
	}{
		{[]string{`{"a":1}`, "--type", "W"}, []string{`{"a":1}`}, "W"},
		{[]string{"--type", "W", "x", "y"}, []string{"x", "y"}, "W"},
		{[]string{"--", "-5"}, []string{"-5"}, ""},
		{[]string{"a", "--", "--type"}, []string{"a", "--type"}, ""},
	} {
		fs := newFlagSet("t")
		typ := fs.String("type", "", "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || *typ != tc.typ {
			t.Errorf("%q: got %q, type %q, %v; want %q, type %q", tc.args, pos, *typ, err, tc.pos, tc.typ)
		}
	}
	if _, err := parseInterspersed(newFlagSet("t"), []string{"-h"}); err != flag.ErrHelp {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// TestReadable checks serve's output for people, which the other tests do
// not see because their stdout is a pipe.
func TestReadable(t *testing.T) {
	var buf bytes.Buffer
	r := &reporter{w: &buf}
	yes, no := true, false
	b64 := "AQI="
	r.emit(event{Event: "listening", Addr: "127.0.0.1:50000"})
	r.emit(event{Event: "connect", Session: 1, Remote: "unix"})
	r.emit(event{Event: "handshake", Session: 1, Success: &yes, BinaryRx: &yes, BinaryTx: &yes, PeerVersion: "2.1.0"})
	r.emit(event{Event: "handshake", Session: 2, Success: &no, BinaryRx: &no, BinaryTx: &no, Error: "sockhop: timeout"})
	r.emit(event{Event: "receive", Session: 1, shown: &shown{Type: "Widget", Data: []byte(`{"id":1}`)}, Request: true})
	r.emit(event{Event: "receive", Session: 1, shown: &shown{Type: "Tile", Base64: &b64}})
	r.emit(event{Event: "receive", Session: 1, shown: &shown{}})
	r.emit(event{Event: "disconnect", Session: 1})
	want := `listening on 127.0.0.1:50000
[1] connect from unix
[1] handshake ok, binary mode both ways, peer version 2.1.0
[2] handshake failed, staying in JSON mode: sockhop: timeout
[1] request Widget {"id":1}
[1] receive Tile (2 bytes) AQI=
[1] receive "" (no data)
[1] disconnect
`
	if buf.String() != want {
		t.Errorf("readable output:\n%s\nwant:\n%s", buf.String(), want)
	}
}
