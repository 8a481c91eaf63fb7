package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// nodeDir holds peer.js and its pinned package.json (tests run in the
// package directory).
const nodeDir = "node"

// TestMain makes sure the Node peer can run, installing Sockhop 1.8.4 with
// npm ci if it is missing, then runs the tests under goleak: every Client,
// Server, Session and peer helper must stop everything it started.
func TestMain(m *testing.M) {
	if err := setupNode(); err != nil {
		fmt.Fprintf(os.Stderr, "interop tests: %v\n", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

// setupNode checks for node and npm and runs npm ci when the peer's
// dependencies are not installed. A missing tool is an error, never a skip:
// CI on a fresh machine must not pass without running these tests.
func setupNode() error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found on PATH (%v): the interop tests need Node.js 18+ and npm to run the real Sockhop 1.8.4 peer (internal/interop/node/peer.js); install them (e.g. apt-get install nodejs npm) and run again", tool, err)
		}
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "sockhop", "package.json")); err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = nodeDir
	cmd.Stdout = os.Stderr // npm's progress is for the log, not for go test's stdout
	cmd.Stderr = os.Stderr
	fmt.Fprintf(os.Stderr, "interop tests: installing the Node peer (npm ci in %s)\n", nodeDir)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci in %s failed: %w (is the registry reachable? run `npm ci --prefix internal/interop/node` by hand to see why)", nodeDir, err)
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "sockhop", "package.json")); err != nil {
		return fmt.Errorf("npm ci in %s succeeded but sockhop is still missing: %w", nodeDir, err)
	}
	return nil
}
