package sockhop

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: every
// Client, Server and Session must stop everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
