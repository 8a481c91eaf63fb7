package sockhop

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: every
// Client, Server and Session must stop everything it started. The test
// binary doubles as the crash-test server when re-executed by
// TestCrashRestart.
func TestMain(m *testing.M) {
	if addr := os.Getenv(crashServerEnv); addr != "" {
		os.Exit(runCrashServer(addr))
	}
	goleak.VerifyTestMain(m)
}
