package sockhop

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Listening on a Unix socket path without taking over a live one.
//
// A socket file outlives its server when the server dies, so a new server
// must remove a stale file, but only a stale one: a probe dial says which.
// Only ECONNREFUSED proves that nobody listens. Any other failure (EACCES:
// the socket belongs to a server of another user; EAGAIN: a live server
// whose accept backlog is full; a timeout: a live, slow server) says
// nothing about liveness, so Listen refuses rather than replace a server
// its clients are talking to.
//
// Two sockhop servers starting on one path at once are serialised by a
// lock file beside the socket (path + ".lock", flock'ed while listening):
// the second fails at once. The socket is then placed with link(2), which
// never replaces a file, so even a server that takes no lock (a Node
// process) is not replaced by a bind that raced with it.

// unixProbe dials path to learn whether a server listens on it. Tests
// replace it to produce failures the machine cannot (a dial timeout).
var unixProbe = func(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
	}
	return err
}

// maxUnixPath is the longest socket path Linux accepts (sun_path is 108
// bytes with its NUL).
const maxUnixPath = 107

func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if len(path) > maxUnixPath {
		return nil, newError(CodeBadOption, fmt.Sprintf("unix socket path of %d bytes is longer than the %d the system allows; use a shorter path", len(path), maxUnixPath), nil)
	}
	lock, err := lockPath(path + ".lock")
	if err != nil {
		return nil, err
	}
	ln, err := listenUnixLocked(path, mode)
	if err != nil {
		lock.release()
		return nil, err
	}
	ln.lock = lock
	return ln, nil
}

// listenUnixLocked replaces a stale socket file and binds; the caller
// holds the path's lock.
func listenUnixLocked(path string, mode os.FileMode) (*unixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, newError(CodeBadOption, fmt.Sprintf("%s exists and is not a socket; refusing to replace it", path), nil)
		}
		// A probe connection: a live server sees it as a short session.
		switch err := unixProbe(path); {
		case err == nil:
			return nil, newError(CodeBadOption, fmt.Sprintf("%s is a live socket: another server listens on it", path), syscall.EADDRINUSE)
		case errors.Is(err, syscall.ENOENT):
			// Removed since the Lstat: nothing to replace.
		case errors.Is(err, syscall.ECONNREFUSED):
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, wrapf(err, "removing stale socket %s", path)
			}
		default:
			return nil, newError(CodeBadOption, fmt.Sprintf("cannot tell whether a server listens on %s (%s); refusing to replace it: stop that server, or remove the file if you know it is stale", path, probeHint(err)), err)
		}
	}
	// Bind in a private directory, set the mode, then link the socket into
	// place: binding at the path directly would leave it open to anyone the
	// umask allows until the chmod. (A path too long for the detour is bound
	// directly.)
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sockhop-")
	if err != nil || len(filepath.Join(dir, "s")) > maxUnixPath {
		if err == nil {
			os.Remove(dir)
		}
		return bindUnix(path, path, mode)
	}
	defer os.Remove(dir)
	return bindUnix(filepath.Join(dir, "s"), path, mode)
}

// probeHint says what a probe failure other than ECONNREFUSED suggests.
func probeHint(err error) string {
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return "the probe connection was denied permission: the socket may belong to a server run by another user"
	case errors.Is(err, syscall.EAGAIN):
		return "the probe connection found the accept backlog full: a live server may be overloaded"
	case isTimeout(err):
		return "the probe connection timed out: a live server may be slow to accept"
	}
	return "the probe connection failed with an error that does not prove the socket stale"
}

// bindUnix listens at tmp, sets mode and links tmp to path.
func bindUnix(tmp, path string, mode os.FileMode) (*unixListener, error) {
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, wrapf(err, "listen on %s", path)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // it would unlink tmp; unixListener removes path
	fail := func(err error) (*unixListener, error) {
		_ = ul.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(wrapf(err, "chmod %s", path))
	}
	if tmp != path {
		if err := placeSocket(tmp, path); err != nil {
			return fail(err)
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(wrapf(err, "stat %s", path))
	}
	return &unixListener{UnixListener: ul, path: path, file: fi}, nil
}

// placeSocket moves the socket at tmp to path without replacing a file
// that appeared there meanwhile (a server that takes no lock). link(2)
// fails with EEXIST where rename(2) would replace; a file system without
// hard links gets the rename.
func placeSocket(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		_ = os.Remove(tmp)
		return nil
	}
	if errors.Is(err, os.ErrExist) {
		return newError(CodeBadOption, fmt.Sprintf("%s appeared while this server was starting: another server listens on it", path), syscall.EADDRINUSE)
	}
	if err := os.Rename(tmp, path); err != nil {
		return wrapf(err, "placing socket at %s", path)
	}
	return nil
}

// unixListener reports the socket's final path as its address and removes
// the file on Close, unless another server has replaced it since, then
// releases the path's lock.
type unixListener struct {
	*net.UnixListener
	path string
	file os.FileInfo
	lock *pathLock
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.file) {
			_ = os.Remove(l.path)
		}
		l.lock.release()
	})
	return err
}
