package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: every Node,
// server, client and NATS server must stop everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
