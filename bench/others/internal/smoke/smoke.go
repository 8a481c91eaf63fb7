// Package smoke is the smoke test the three commands share: it builds a
// command and runs its scenarios with tiny sizes through the real binary,
// checking each result line.
package smoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sockhop/sockhop-go/bench/others/internal/kit"
)

// Main builds the command in the test's directory into a temporary one,
// sets *bin to it, and runs the tests.
func Main(m *testing.M, name string, bin *string) int {
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", *bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building %s: %v\n%s", name, err, out)
		return 1
	}
	return m.Run()
}

// Case is one run: its flags, after -json.
type Case []string

// Default is every scenario with tiny sizes, several connections where
// the scenario takes them.
var Default = []Case{
	{"-scenario", "s1", "-n", "3000", "-clients", "3"},
	{"-scenario", "s1", "-n", "1000", "-decode", "map"},
	{"-scenario", "s2seq", "-n", "300"},
	{"-scenario", "s2par", "-n", "3000", "-clients", "3", "-inflight", "8"},
	{"-scenario", "s2par", "-n", "1000", "-decode", "map"},
	{"-scenario", "s4", "-n", "300", "-clients", "3"},
	{"-scenario", "s4", "-n", "100", "-clients", "2", "-decode", "map"},
	{"-scenario", "s5", "-clients", "30"},
}

var units = map[string]string{"s1": "msg/s", "s2seq": "rt/s", "s2par": "rt/s", "s4": "deliv/s", "s5": "KB/conn"}

// Run runs bin (one minute at most) and returns its standard output and
// exit status.
func Run(t *testing.T, bin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		status = exit.ExitCode()
	default:
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), status
}

// Scenarios runs every case through bin and checks its JSON line.
func Scenarios(t *testing.T, bin, mode string, cases []Case) {
	defer goleak.VerifyNone(t)
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			args := append([]string{"-json"}, c...)
			stdout, stderr, status := Run(t, bin, args...)
			if status != 0 {
				t.Fatalf("exit status %d\n%s", status, stderr)
			}
			check(t, mode, c, stdout)
		})
	}
}

func flagOf(c Case, name string) string {
	if i := slices.Index(c, name); i >= 0 && i+1 < len(c) {
		return c[i+1]
	}
	return ""
}

func check(t *testing.T, mode string, c Case, stdout string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, got %q", stdout)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &raw); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	for _, k := range []string{"scenario", "mode", "transport", "value", "unit", "n", "secs", "client_cpu_us_per_unit", "server_cpu_us_per_unit"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %q in %s", k, lines[0])
		}
	}
	var r kit.Result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	sc := flagOf(c, "-scenario")
	want := flagOf(c, "-n")
	if sc == "s5" {
		want = flagOf(c, "-clients")
	}
	if r.Scenario != sc || r.Mode != mode || r.Transport != "tcp" || r.Unit != units[sc] || fmt.Sprint(r.N) != want {
		t.Errorf("got %s", lines[0])
	}
	if sc != "s5" && (r.Value <= 0 || r.Secs <= 0) {
		t.Errorf("no throughput in %s", lines[0])
	}
	latency := sc == "s2seq" || sc == "s2par"
	if latency != (r.P50 != nil && r.P99 != nil) {
		t.Errorf("p50/p99 wanted for request/reply only: %s", lines[0])
	}
	if latency && (*r.P50 <= 0 || *r.P99 < *r.P50) {
		t.Errorf("latencies out of order: %s", lines[0])
	}
}
