//go:build !unix

package sockhop

// pathLock is absent where there is no flock: two servers starting on one
// path at once are then told apart only by link(2) refusing to replace the
// socket file the first one placed (placeSocket).
type pathLock struct{}

func lockPath(string) (*pathLock, error) { return nil, nil }

func (*pathLock) release() {}
