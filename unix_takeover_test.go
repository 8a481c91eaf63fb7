//go:build linux

package sockhop

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A live Unix socket is never taken over (issue 15 item 2): only a probe
// refused with ECONNREFUSED proves a socket file stale.

// plainUnixListener listens at path without sockhop (no lock file, as a
// Node server would), with the socket file's mode set to mode.
func plainUnixListener(t *testing.T, path string, mode os.FileMode) *net.UnixListener {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	noErr(t, err)
	t.Cleanup(func() { ln.Close() })
	noErr(t, os.Chmod(path, mode))
	return ln
}

// stillServes checks that ln still owns path: the file is the one it
// bound, and a connection to path is accepted by ln.
func stillServes(t *testing.T, ln *net.UnixListener, path string, before os.FileInfo) {
	t.Helper()
	after, err := os.Lstat(path)
	noErr(t, err)
	if !os.SameFile(before, after) {
		t.Fatalf("%s was replaced", path)
	}
	accepted := make(chan error, 1)
	go func() {
		_ = ln.SetDeadline(time.Now().Add(5 * time.Second))
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("unix", path)
	noErr(t, err)
	c.Close()
	noErr(t, recv(t, accepted, "accept on the original listener"))
}

// TestUnixOtherUserRefused: a server run by another user, whose probe of a
// live socket is denied (EACCES), refuses to start and leaves the socket
// alone. As root the impostor really runs as another user (the test binary
// re-executed as uid 65534); as anyone else the socket's mode 000 denies
// the probe to its owner too. Only root can also show that another user's
// sockhop server is protected by its lock file.
func TestUnixOtherUserRefused(t *testing.T) {
	dir, err := os.MkdirTemp("", "sh")
	noErr(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Anyone may create and remove files here (no sticky bit): only the
	// probe stands between the impostor and the live socket.
	noErr(t, os.Chmod(dir, 0o777))

	root := os.Geteuid() == 0
	mode := os.FileMode(0o600)
	if !root {
		mode = 0
	}
	path := filepath.Join(dir, "a.sock")
	ln := plainUnixListener(t, path, mode)
	before, err := os.Lstat(path)
	noErr(t, err)

	if !root {
		srv := NewServer(ServerOptions{Path: path})
		err := srv.Listen()
		noErr(t, srv.Close())
		if err == nil {
			t.Fatal("Listen took over a socket whose probe got EACCES")
		}
		t.Logf("Listen: %v", err)
		errorIs(t, err, syscall.EACCES)
		errorIs(t, err, &Error{Code: CodeBadOption})
		if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused server left its lock file: %v", err)
		}
		stillServes(t, ln, path, before)
		return
	}

	exe := filepath.Join(dir, "impostor.test")
	copyFile(t, os.Args[0], exe, 0o755)
	impostor := func(path string) string {
		t.Helper()
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), impostorEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("impostor as uid %d: %v (%s)", nobody, err, out)
		}
		t.Logf("impostor as uid %d on %s: %s", nobody, filepath.Base(path), out)
		return strings.TrimSpace(string(out))
	}

	t.Run("probe denied", func(t *testing.T) {
		out := impostor(path)
		if !strings.HasPrefix(out, "refused eacces=true ") {
			t.Fatalf("impostor: %q, want a refusal for EACCES", out)
		}
		if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused impostor left its lock file: %v", err)
		}
		stillServes(t, ln, path, before)
	})
	t.Run("lock of another user", func(t *testing.T) {
		// A sockhop server's socket: its lock file (mode 0600) stops the
		// impostor before any probe.
		path := filepath.Join(dir, "b.sock")
		unixServer(t, ServerOptions{Path: path})
		out := impostor(path)
		if !strings.HasPrefix(out, "refused eacces=true ") || !strings.Contains(out, "lock file") {
			t.Fatalf("impostor: %q, want a refusal at the lock file", out)
		}
		unixRoundTrip(t, path)
	})
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	noErr(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	noErr(t, err)
	_, err = io.Copy(dst, src)
	noErr(t, err)
	noErr(t, dst.Close())
}

// TestUnixFullBacklogRefused: a live server whose accept backlog is full
// (the probe gets EAGAIN) is not replaced. The server is a raw socket with
// a backlog of 0, which one unaccepted connection fills.
func TestUnixFullBacklogRefused(t *testing.T) {
	path := shortSocketPath(t)
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	noErr(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	noErr(t, syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}))
	noErr(t, syscall.Listen(fd, 0))
	before, err := os.Lstat(path)
	noErr(t, err)
	// Fill the backlog: connect until the kernel says EAGAIN (the first
	// connection is queued; a bounded loop in case a kernel queues more).
	full := false
	for range 16 {
		c, err := net.Dial("unix", path)
		if errors.Is(err, syscall.EAGAIN) {
			full = true
			break
		}
		noErr(t, err)
		t.Cleanup(func() { c.Close() })
	}
	if !full {
		t.Fatal("setup: the backlog of 0 never filled")
	}

	srv := NewServer(ServerOptions{Path: path})
	err = srv.Listen()
	noErr(t, srv.Close())
	if err == nil {
		t.Fatal("Listen replaced a live socket whose backlog is full")
	}
	t.Logf("Listen: %v", err)
	errorIs(t, err, syscall.EAGAIN)
	errorIs(t, err, &Error{Code: CodeBadOption})
	after, err := os.Lstat(path)
	noErr(t, err)
	if !os.SameFile(before, after) {
		t.Fatalf("%s was replaced", path)
	}
	// The raw server still owns it: it accepts the queued connection.
	nfd, _, err := syscall.Accept(fd)
	noErr(t, err)
	syscall.Close(nfd)
}

// TestUnixProbeTimeoutRefused: a probe that times out (a live server too
// slow to accept) refuses too. A Unix connect does not time out on Linux,
// so the probe is replaced.
func TestUnixProbeTimeoutRefused(t *testing.T) {
	path := shortSocketPath(t)
	ln := plainUnixListener(t, path, 0o600)
	before, err := os.Lstat(path)
	noErr(t, err)
	old := unixProbe
	unixProbe = func(string) error {
		return &net.OpError{Op: "dial", Net: "unix", Err: os.ErrDeadlineExceeded}
	}
	defer func() { unixProbe = old }()

	srv := NewServer(ServerOptions{Path: path})
	err = srv.Listen()
	noErr(t, srv.Close())
	if err == nil {
		t.Fatal("Listen replaced a socket whose probe timed out")
	}
	t.Logf("Listen: %v", err)
	errorIs(t, err, os.ErrDeadlineExceeded)
	if !strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %q does not say the probe timed out", err)
	}
	stillServes(t, ln, path, before)
}

// TestUnixConcurrentStarts: four servers starting on one path at once,
// ten times, on no file and on a stale socket: exactly one listens and
// serves, the others fail with EADDRINUSE. The probe is slowed, a little
// more for each caller, as on a loaded machine: without the lock file a
// later server would remove the socket an earlier one had just placed,
// taking it to be the stale one it probed.
func TestUnixConcurrentStarts(t *testing.T) {
	const servers, trials = 4, 10
	old := unixProbe
	var probes atomic.Int32
	unixProbe = func(path string) error {
		err := old(path)
		time.Sleep(time.Duration(probes.Add(1)%servers) * 5 * time.Millisecond)
		return err
	}
	defer func() { unixProbe = old }()
	for trial := range trials {
		path := shortSocketPath(t)
		stale := trial%2 == 1
		if stale {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			noErr(t, err)
			ln.SetUnlinkOnClose(false)
			noErr(t, ln.Close())
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		srvs := make([]*Server, servers)
		errs := make([]error, servers)
		for i := range servers {
			srvs[i] = NewServer(ServerOptions{Path: path, ConnOptions: fastOpts()})
			srvs[i].Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
			wg.Go(func() {
				<-start
				errs[i] = srvs[i].Listen()
			})
		}
		close(start)
		wg.Wait()
		listening := 0
		for i, err := range errs {
			if err == nil {
				listening++
				continue
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("trial %d (stale %t): server %d failed with %v, not EADDRINUSE", trial, stale, i, err)
			}
		}
		if listening != 1 {
			t.Errorf("trial %d (stale %t): %d servers listening, want exactly 1 (errors %v)", trial, stale, listening, errs)
		} else {
			unixRoundTrip(t, path)
		}
		for _, srv := range srvs {
			noErr(t, srv.Close())
		}
		for _, suffix := range []string{"", ".lock"} {
			if _, err := os.Lstat(path + suffix); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("trial %d: %s%s left after Close: %v", trial, filepath.Base(path), suffix, err)
			}
		}
	}
}

// TestUnixLeftoverLockFile: a lock file left by a server that died (the
// kernel released its flock) does not stop a new server.
func TestUnixLeftoverLockFile(t *testing.T) {
	path := shortSocketPath(t)
	noErr(t, os.WriteFile(path+".lock", nil, 0o600))
	unixServer(t, ServerOptions{Path: path})
	unixRoundTrip(t, path)
}

// TestUnixPlacedWithoutReplacing: a socket that appears at the path while
// a server starts (a server that takes no lock bound it after the probe)
// is not replaced: the starting server fails.
func TestUnixPlacedWithoutReplacing(t *testing.T) {
	path := shortSocketPath(t)
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "t")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	noErr(t, err)
	defer ln.Close()
	other := plainUnixListener(t, path, 0o600)
	before, err := os.Lstat(path)
	noErr(t, err)
	err = placeSocket(tmp, path)
	if err == nil {
		t.Fatal("placeSocket replaced a live socket")
	}
	errorIs(t, err, syscall.EADDRINUSE)
	stillServes(t, other, path, before)
}
