package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"

	sockhop "github.com/sockhop/sockhop-go"
)

// TestConventions: --version, a duration without a unit, $SOCKHOP_ADDR.
func TestConventions(t *testing.T) {
	r := sockhopRun(t, "", "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "sockhop ") {
		t.Errorf("--version: exit %d, stdout %q", r.code, r.stdout)
	}
	for _, args := range [][]string{{"send", "--timeout", "5", "1"}, {"send", "--timeout=5", "1"}, {"replay", "x.json", "--max-pause", "2"}} {
		r = sockhopRun(t, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "a duration needs a unit, e.g. ") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the unit explained", args, r.code, r.stderr)
		}
		oneErrorLine(t, r)
	}

	p := startServe(t, "--addr", "127.0.0.1:0", "--echo")
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "send", "--request", `"via env"`)
	cmd.Env = append(childEnv, "SOCKHOP_ADDR="+p.target[1])
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || out.String() != `{"type":"String","data":"via env"}`+"\n" {
		t.Errorf("send with $SOCKHOP_ADDR: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
}

// TestTLSHintAndInsecure: plain send to a TLS server suggests --tls;
// --tls-insecure connects without trusting the certificate.
func TestTLSHintAndInsecure(t *testing.T) {
	cert, key := writeCert(t)
	p := startServe(t, "--addr", "127.0.0.1:0", "--echo", "--tls-cert", cert, "--tls-key", key)
	r := sockhopRun(t, "", append([]string{"send", "--timeout", "4s", `"in clear"`}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "is it a TLS server? try --tls") {
		t.Errorf("send without TLS to a TLS server: exit %d, stderr %q; want 1 and the hint", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	r = sockhopRun(t, "", append([]string{"send", "--tls", "--request", `"untrusted"`}, p.target...)...)
	if r.code != 1 {
		t.Errorf("--tls without the CA: exit %d, stderr %q; want 1", r.code, r.stderr)
	}
	r = sockhopRun(t, "", append([]string{"send", "--tls-insecure", "--request", `"insecure"`}, p.target...)...)
	if want := `{"type":"String","data":"insecure"}` + "\n"; r.code != 0 || r.stdout != want {
		t.Errorf("--tls-insecure: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
}

// TestProbeNeedsClientCert: probe with --tls-ca against a server that
// requires client certificates says so and exits 1 (it used to report a
// peer that is not Sockhop, exit 0); with the certificate it probes.
func TestProbeNeedsClientCert(t *testing.T) {
	cert, key := writeCert(t)
	p := startServe(t, "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", cert)
	r, res := probeJSON(t, append([]string{"--tls-ca", cert}, p.target...)...)
	if r.code != 1 || !strings.Contains(res.Error, "needs a client certificate") || res.Kind == kindNotSockhop {
		t.Errorf("probe without a client certificate: exit %d, %+v, stderr %q", r.code, res, r.stderr)
	}
	r, res = probeJSON(t, append([]string{"--tls-ca", cert, "--tls-cert", cert, "--tls-key", key}, p.target...)...)
	if r.code != 0 || res.Kind != kindSockhop2 {
		t.Errorf("probe with a client certificate: exit %d, %+v, stderr %q", r.code, res, r.stderr)
	}
}

// TestProbeTLSHint: plain probe of a TLS server suggests --tls.
func TestProbeTLSHint(t *testing.T) {
	cert, key := writeCert(t)
	p := startServe(t, "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	_, res := probeJSON(t, p.target...)
	if !strings.Contains(strings.Join(res.Notes, "\n"), "is it a TLS server? try --tls") {
		t.Errorf("plain probe of a TLS server: %+v", res)
	}
}

// TestJSONEverywhere: every command accepts --json; demo and version print
// JSON lines with it.
func TestJSONEverywhere(t *testing.T) {
	for _, c := range commands() {
		if c.name == "help" {
			continue
		}
		if r := sockhopRun(t, "", c.name, "--json", "--help"); r.code != 0 {
			t.Errorf("%s --json: exit %d, stderr %q", c.name, r.code, r.stderr)
		}
	}
	r := sockhopRun(t, "", "demo", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 9 {
		t.Fatalf("demo --json: exit %d, %d lines, stderr %q", r.code, len(lines), r.stderr)
	}
	for i, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("line %d %q: %v", i+1, l, err)
		} else if i > 0 && i < 8 && (v["event"] != "step" || v["ok"] != true) {
			t.Errorf("line %d: %v", i+1, v)
		}
	}
	r = sockhopRun(t, "", "version", "--json")
	var v struct{ Version string }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version != sockhop.Version {
		t.Errorf("version --json: %q, %v", r.stdout, err)
	}
}

// TestSendKeepGoing: a bad stdin line ends the run, or with --keep-going
// is skipped, said on stderr, and the run ends with exit 1 once the good
// lines were delivered.
func TestSendKeepGoing(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0")
	r := sockhopRun(t, "1\n{bad\n3\n", append([]string{"send"}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "stdin line 2") || !strings.Contains(r.stderr, "--keep-going") {
		t.Errorf("bad line: exit %d, stderr %q", r.code, r.stderr)
	}
	r = sockhopRun(t, "10\n{bad\n30\n", append([]string{"send", "--keep-going"}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "stdin line 2 skipped") || !strings.Contains(r.stderr, "1 of 3 stdin lines were skipped") {
		t.Errorf("--keep-going: exit %d, stderr %q", r.code, r.stderr)
	}
	p.waitFor(t, "line 3", map[string]any{"event": "receive", "data": 30})
	p.waitFor(t, "line 1", map[string]any{"event": "receive", "data": 10})
}

// TestBenchBusyPort: a busy --port is one error line naming it.
func TestBenchBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := sockhopRun(t, "", "bench", "--port", port, "--n", "1000")
	if r.code != 1 || !strings.Contains(r.stderr, "address already in use") {
		t.Errorf("bench on a busy port: exit %d, stderr %q", r.code, r.stderr)
	}
	oneErrorLine(t, r)
}
