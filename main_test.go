package sockhop

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: every
// Client, Server and Session must stop everything it started. The test
// binary doubles as the crash-test server when re-executed by
// TestCrashRestart, and as
// the other user's server by TestUnixOtherUserRefused.
func TestMain(m *testing.M) {
	if addr := os.Getenv(crashServerEnv); addr != "" {
		os.Exit(runCrashServer(addr))
	}
	if path := os.Getenv(impostorEnv); path != "" {
		os.Exit(runImpostor(path))
	}
	goleak.VerifyTestMain(m)
}
