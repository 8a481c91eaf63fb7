package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// startBenchChild re-executes this binary as the bench server and waits
// for its ready line.
func startBenchChild(ctx context.Context, b *bench) (*benchChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable to start the bench server: %w", err)
	}
	ch := &benchChild{wait: make(chan error, 1)}
	args := []string{"bench", "server", "--mode", b.f.mode, "--transport", b.f.transport, "--decode", b.f.decode}
	if b.f.transport == "unix" {
		if ch.dir, err = os.MkdirTemp("", "shbench"); err != nil {
			return nil, err
		}
		args = append(args, "--path", filepath.Join(ch.dir, "s.sock"))
	} else {
		args = append(args, "--port", strconv.Itoa(b.f.port))
	}
	if b.f.noRelease {
		args = append(args, "--no-release")
	}
	if b.f.inline {
		args = append(args, "--inline")
	}
	if b.sc.queue != nil {
		args = append(args, "--queue", strconv.Itoa(b.sc.queue(&b.f)))
	}
	cmd := exec.Command(self, args...)
	errOut := &childStderr{w: os.Stderr}
	cmd.Stderr = errOut
	if ch.stdin, err = cmd.StdinPipe(); err != nil {
		ch.cleanup()
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		ch.cleanup()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		ch.cleanup()
		return nil, fmt.Errorf("starting the bench server: %w", err)
	}
	ch.proc = cmd.Process
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadBytes('\n')
		if err == nil {
			var r struct{ Addr, Path string }
			if err = json.Unmarshal(line, &r); err == nil {
				ch.addr, ch.path = r.Addr, r.Path
			}
		}
		ready <- err
		ch.wait <- cmd.Wait()
	}()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case err = <-ready:
	case <-t.C:
		err = errors.New("no ready line within 10 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		ch.stop() // waits for the child, and so for its stderr
		if why := errOut.lastLine(); why != "" {
			// The child's own one-line error says why (a busy --port).
			return nil, fmt.Errorf("bench server did not start: %s", strings.TrimPrefix(why, "sockhop: "))
		}
		return nil, fmt.Errorf("bench server did not start: %w", err)
	}
	errOut.started()
	return ch, nil
}

// childStderr holds what the bench server writes to stderr until it has
// started, so that a failure to start is one line from us, and passes it
// on afterwards.
type childStderr struct {
	mu      sync.Mutex
	w       io.Writer
	held    []byte
	running bool
}

func (c *childStderr) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return c.w.Write(p)
	}
	if len(c.held)+len(p) <= 64<<10 {
		c.held = append(c.held, p...)
	}
	return len(p), nil
}

// started passes on what was held and everything after it.
func (c *childStderr) started() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = true
	_, _ = c.w.Write(c.held)
	c.held = nil
}

func (c *childStderr) lastLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(c.held)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// stop closes the child's stdin, which ends it, and waits (killing it
// after 5 s).
func (ch *benchChild) stop() {
	if ch.stdin != nil {
		_ = ch.stdin.Close()
		ch.stdin = nil
		if ch.proc != nil {
			select {
			case <-ch.wait:
			case <-time.After(5 * time.Second):
				_ = ch.proc.Kill()
				<-ch.wait
			}
		}
	}
	ch.cleanup()
}

func (ch *benchChild) cleanup() {
	if ch.dir != "" {
		os.RemoveAll(ch.dir)
		ch.dir = ""
	}
}

// clockTick is USER_HZ, the unit of /proc/PID/stat CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpu returns the user+system CPU time the child used so far, from
// /proc/PID/stat (10 ms resolution; timed passes last seconds).
func (ch *benchChild) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", ch.proc.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	return time.Duration(ut+st) * clockTick, nil
}
