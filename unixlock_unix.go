//go:build unix

package sockhop

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// pathLock is an flock'ed lock file. The kernel drops an flock when its
// holder dies, so a crashed server leaves a file but no lock.
type pathLock struct {
	f    *os.File
	path string
}

// lockPath takes the lock file at path, creating it, or fails at once when
// another server holds it.
func lockPath(path string) (*pathLock, error) {
	// A holder that releases removes the file, so the file opened here may
	// be gone (and another made) by the time the flock is granted: then
	// the flock locks nothing anyone else sees, and it is tried again.
	for range 8 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, newError(CodeBadOption, fmt.Sprintf("cannot open lock file %s (another user's server may hold it); refusing to listen", path), err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, newError(CodeBadOption, fmt.Sprintf("another server is listening or starting on this socket (it holds %s)", path), syscall.EADDRINUSE)
			}
			return nil, wrapf(err, "locking %s", path)
		}
		held, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, wrapf(err, "stat %s", path)
		}
		if now, err := os.Lstat(path); err == nil && os.SameFile(held, now) {
			return &pathLock{f: f, path: path}, nil
		}
		_ = f.Close()
	}
	return nil, newError(CodeBadOption, fmt.Sprintf("lock file %s kept being replaced while this server was starting; another server is starting on this socket", path), syscall.EADDRINUSE)
}

// release removes the lock file, while still holding it so that nobody
// takes a lock on a file about to vanish, and unlocks. Nil-safe.
func (l *pathLock) release() {
	if l == nil {
		return
	}
	held, err := l.f.Stat()
	if now, lerr := os.Lstat(l.path); err == nil && lerr == nil && os.SameFile(held, now) {
		_ = os.Remove(l.path)
	}
	_ = l.f.Close()
}
