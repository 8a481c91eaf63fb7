package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// bin is the sockhop binary TestMain builds; the tests run it as users do.
var bin string

// raceBuild is set by race_test.go under -race, so that the binary is
// built with the race detector too.
var raceBuild bool

// childEnv is the environment of the binary: a race-enabled binary
// otherwise sleeps a second on exit (the race runtime's atexit_sleep_ms),
// which would hide how fast serve really stops.
var childEnv = append(os.Environ(), "GORACE=atexit_sleep_ms=0")

// testWait bounds every wait of the tests; generous for a loaded 2-core
// machine, since nothing waits for it unless something is broken.
const testWait = 10 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sockhop-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "sockhop")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sockhop: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// sockhopRun runs the binary to its end, with stdin as its input.
func sockhopRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sockhop %q: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("sockhop %q did not end within %s", args, testWait)
	}
	return r
}

// oneErrorLine checks that stderr is exactly one "sockhop: " line.
func oneErrorLine(t *testing.T, r result) {
	t.Helper()
	if !strings.HasPrefix(r.stderr, "sockhop: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one \"sockhop: \" line: %q", r.stderr)
	}
}

// serveProc is a running `sockhop serve --json` and the events it printed.
type serveProc struct {
	cmd     *exec.Cmd
	stderr  bytes.Buffer
	mu      sync.Mutex
	events  []map[string]any
	changed chan struct{} // closed and replaced on each event
	exited  chan struct{} // closed once the process was waited for
	waitErr error
	target  []string // the send flags that reach it
}

// startEvents runs the binary with args and collects the JSON lines it
// prints, as startServe does for serve. It is stopped at the end of the
// test if the test did not stop it.
func startEvents(t *testing.T, args []string) *serveProc {
	t.Helper()
	p := &serveProc{changed: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		dec := json.NewDecoder(out)
		for {
			var ev map[string]any
			if dec.Decode(&ev) != nil {
				break
			}
			p.mu.Lock()
			p.events = append(p.events, ev)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(testWait):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("%s did not exit on SIGTERM", args[0])
		}
	})
	return p
}

// startServe starts serve with args and waits for it to listen. It is
// stopped at the end of the test if the test did not stop it.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	return startListening(t, "serve", args)
}

// startListening runs `sockhop cmd --json args...` (serve or sniff), waits
// for its listening event and sets target to the flags that reach it.
func startListening(t *testing.T, cmd string, args []string) *serveProc {
	t.Helper()
	p := startEvents(t, append([]string{cmd, "--json"}, args...))
	ev := p.waitFor(t, "listening", map[string]any{"event": "listening"})
	if u, ok := ev["unix"].(string); ok {
		p.target = []string{"--unix", u}
	} else {
		p.target = []string{"--addr", ev["addr"].(string)}
	}
	return p
}

// waitFor returns the first event, printed so far or later, that has every
// key and value of want.
func (p *serveProc) waitFor(t *testing.T, what string, want map[string]any) map[string]any {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for _, ev := range p.events {
			if matches(ev, want) {
				p.mu.Unlock()
				return ev
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited:
			t.Fatalf("%s: serve exited (%v) without that event; events %v; stderr %q", what, p.waitErr, p.snapshot(), p.stderr.String())
		case <-deadline.C:
			t.Fatalf("%s: no event %v within %s; events %v", what, want, testWait, p.snapshot())
		}
	}
}

func (p *serveProc) snapshot() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.events...)
}

// stop sends SIGTERM and returns the exit code and how long it took.
func (p *serveProc) stop(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(testWait):
		t.Fatalf("serve did not exit within %s of SIGTERM", testWait)
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

// matches compares values by their JSON text, so that 1 matches 1.0 and
// maps match whatever their key order.
func matches(ev, want map[string]any) bool {
	for k, w := range want {
		v, ok := ev[k]
		if !ok {
			return false
		}
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(w)
		if !bytes.Equal(a, b) {
			return false
		}
	}
	return true
}

// freeAddr returns a TCP address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// shortDir is a temporary directory with a path short enough for Unix
// sockets (t.TempDir can pass the 107-byte limit).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
