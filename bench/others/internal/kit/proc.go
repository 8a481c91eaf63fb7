package kit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Child is a child process: this executable re-run with other flags. It
// prints {"addr":"HOST:PORT"} once it serves, and exits when its standard
// input closes.
type Child struct {
	Addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has been waited for
}

// StartChild starts this executable with args and waits (10 s at most)
// for its ready line.
func StartChild(args ...string) (*Child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := &Child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadBytes('\n')
		if err == nil {
			var r struct{ Addr string }
			if err = json.Unmarshal(line, &r); err == nil && r.Addr == "" {
				err = fmt.Errorf("ready line %q has no addr", line)
			}
			ch.Addr = r.Addr
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out) // Wait wants the pipe drained
		_ = cmd.Wait()
		close(ch.done)
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("no ready line within 10 s")
	}
	if err != nil {
		ch.Stop()
		return nil, fmt.Errorf("child %v did not start: %w", args, err)
	}
	return ch, nil
}

// Stop closes the child's standard input, which ends it, and waits for it
// to exit, killing it after 5 s.
func (ch *Child) Stop() {
	if ch.stdin != nil {
		_ = ch.stdin.Close()
		ch.stdin = nil
	}
	select {
	case <-ch.done:
	case <-time.After(5 * time.Second):
		_ = ch.cmd.Process.Kill()
		<-ch.done
	}
}

// CPU is the user+system time the child used so far, from /proc/PID/stat
// (10 ms resolution; timed passes last seconds).
func (ch *Child) CPU() (time.Duration, error) {
	return ProcCPU(ch.cmd.Process.Pid)
}

// Children are the processes that make up the server side.
type Children []*Child

// CPU is the CPU time of them all.
func (cs Children) CPU() (time.Duration, error) {
	var sum time.Duration
	for _, c := range cs {
		d, err := c.CPU()
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// Stop stops them, the last started first.
func (cs Children) Stop() {
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i].Stop()
	}
}

// clockTick is USER_HZ, the unit of /proc/PID/stat CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcCPU is process pid's user+system CPU time so far.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
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

// SelfCPU is this process's user+system CPU time so far.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// SelfRSS returns this process's resident memory after a GC that returns
// what it can to the OS, as rawgo's server measures it for s5.
func SelfRSS() (RSS, error) {
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return RSS{}, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return RSS{KB: kb}, err
		}
	}
	return RSS{}, errors.New("no VmRSS in /proc/self/status")
}

// Serve is a child's life once it serves: it prints the ready line for
// addr and returns when standard input closes.
func Serve(addr string) {
	b, _ := json.Marshal(map[string]string{"addr": addr})
	fmt.Printf("%s\n", b)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
