package sockhop

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// Unix socket hygiene (RELIABILITY.md R14). None of these tests may run in
// parallel with others: one changes the process umask.

// unixServer listens on path with an echo handler and closes at cleanup.
func unixServer(t *testing.T, o ServerOptions) *Server {
	t.Helper()
	o.ConnOptions = fastOpts()
	srv := NewServer(o)
	noErr(t, srv.Listen())
	t.Cleanup(func() { srv.Close() })
	srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	return srv
}

// unixRoundTrip connects a fresh client to path and checks a request.
func unixRoundTrip(t *testing.T, path string) {
	t.Helper()
	c := NewClient(ClientOptions{Path: path, ConnOptions: fastOpts()})
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	r, err := c.Request(testCtx(t), Named{Type: "Echo", Data: path})
	noErr(t, err)
	var got string
	noErr(t, r.Decode(&got))
	equal(t, "echo", got, path)
}

// TestUnixSocketMode: the socket file gets exactly SocketMode (default
// 0600), whatever the umask; umask 000 would otherwise leave it 0777.
func TestUnixSocketMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for _, tc := range []struct {
		set, want os.FileMode
	}{{0, 0o600}, {0o660, 0o660}, {0o666, 0o666}, {0o700, 0o700}} {
		t.Run(tc.want.String(), func(t *testing.T) {
			path := shortSocketPath(t)
			srv := unixServer(t, ServerOptions{Path: path, SocketMode: tc.set})
			fi, err := os.Lstat(path)
			noErr(t, err)
			if fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("%s is %v, not a socket", path, fi.Mode())
			}
			equal(t, "socket mode", fi.Mode().Perm(), tc.want)
			unixRoundTrip(t, path)
			noErr(t, srv.Close())
		})
	}
}

// TestUnixStaleSocketReplaced: a socket file nobody listens on (left by a
// dead server) is replaced.
func TestUnixStaleSocketReplaced(t *testing.T) {
	path := shortSocketPath(t)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	noErr(t, err)
	ln.SetUnlinkOnClose(false)
	noErr(t, ln.Close())
	fi, err := os.Lstat(path)
	noErr(t, err)
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("setup: %s is not a stale socket (%v)", path, fi.Mode())
	}
	unixServer(t, ServerOptions{Path: path})
	unixRoundTrip(t, path)
}

// TestUnixLiveSocketRefused: a second server on a live socket fails to
// Listen with an error naming the problem; the first one keeps serving,
// both its clients and new ones, and its file survives the second's Close.
func TestUnixLiveSocketRefused(t *testing.T) {
	path := shortSocketPath(t)
	var started atomic.Int32
	first := unixServer(t, ServerOptions{Path: path,
		OnSessionStart: func(context.Context, *Session) error { started.Add(1); return nil }})
	c := NewClient(ClientOptions{Path: path, ConnOptions: fastOpts()})
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))

	second := NewServer(ServerOptions{Path: path, ConnOptions: fastOpts()})
	err := second.Listen()
	if err == nil {
		second.Close()
		t.Fatal("a second server could listen on a live socket")
	}
	t.Logf("second Listen: %v", err)
	errorIs(t, err, syscall.EADDRINUSE)
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the path", err)
	}
	noErr(t, second.Close())

	fi, err := os.Lstat(path)
	noErr(t, err)
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is no longer a socket", path)
	}
	r, err := c.Request(testCtx(t), Named{Type: "Echo", Data: 1})
	noErr(t, err)
	equal(t, "reply on the first server", string(r.JSON()), "1")
	unixRoundTrip(t, path)
	eventually(t, "only the client's session left", func() bool { return len(first.Sessions()) == 1 })
	// 2 real clients; a third session is the second server's liveness probe.
	t.Logf("sessions started on the first server: %d (2 clients)", started.Load())
}

// TestUnixRegularFileRefused: Listen refuses to replace a file that is not
// a socket, and leaves it as it was.
func TestUnixRegularFileRefused(t *testing.T) {
	path := shortSocketPath(t)
	content := []byte("precious data, not a socket\n")
	noErr(t, os.WriteFile(path, content, 0o640))
	before, err := os.Lstat(path)
	noErr(t, err)

	srv := NewServer(ServerOptions{Path: path, ConnOptions: fastOpts()})
	err = srv.Listen()
	if err == nil {
		srv.Close()
		t.Fatal("Listen replaced a regular file")
	}
	t.Logf("Listen: %v", err)
	errorIs(t, err, &Error{Code: CodeBadOption})
	noErr(t, srv.Close())

	after, err := os.Lstat(path)
	noErr(t, err)
	got, err := os.ReadFile(path)
	noErr(t, err)
	if !bytes.Equal(got, content) {
		t.Fatalf("file content changed to %q", got)
	}
	equal(t, "mode", after.Mode(), before.Mode())
	equal(t, "modification time", after.ModTime(), before.ModTime())

	// A directory and a symlink to a live socket are refused the same way.
	dir := filepath.Join(filepath.Dir(path), "d")
	noErr(t, os.Mkdir(dir, 0o700))
	srv = NewServer(ServerOptions{Path: dir})
	errorIs(t, srv.Listen(), &Error{Code: CodeBadOption})
	noErr(t, srv.Close())
	live := shortSocketPath(t)
	unixServer(t, ServerOptions{Path: live})
	link := filepath.Join(filepath.Dir(path), "l")
	noErr(t, os.Symlink(live, link))
	srv = NewServer(ServerOptions{Path: link})
	errorIs(t, srv.Listen(), &Error{Code: CodeBadOption})
	noErr(t, srv.Close())
	unixRoundTrip(t, live)
}

// TestUnixPathLength: a path of 107 bytes works; one of 108 is refused
// with a clear error before anything is created.
func TestUnixPathLength(t *testing.T) {
	dir, err := os.MkdirTemp("", "sh")
	noErr(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	pathOf := func(n int) string {
		return filepath.Join(dir, strings.Repeat("x", n-len(dir)-1))
	}

	long := pathOf(108)
	equal(t, "long path length", len(long), 108)
	srv := NewServer(ServerOptions{Path: long})
	err = srv.Listen()
	if err == nil {
		srv.Close()
		t.Fatal("Listen accepted a 108-byte path")
	}
	t.Logf("Listen: %v", err)
	errorIs(t, err, &Error{Code: CodeBadOption})
	noErr(t, srv.Close())
	if _, err := os.Lstat(long); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("something was created at the refused path: %v", err)
	}

	max := pathOf(107)
	equal(t, "max path length", len(max), 107)
	unixServer(t, ServerOptions{Path: max})
	unixRoundTrip(t, max)
}

// TestUnixCloseRemovesFile: Close removes the socket file, also with
// sessions open, and a new server can then listen on the same path.
func TestUnixCloseRemovesFile(t *testing.T) {
	path := shortSocketPath(t)
	srv := unixServer(t, ServerOptions{Path: path})
	c := NewClient(ClientOptions{Path: path, ConnOptions: fastOpts()})
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	noErr(t, srv.Close())
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file still there after Close: %v", err)
	}
	unixServer(t, ServerOptions{Path: path})
	unixRoundTrip(t, path)
}
