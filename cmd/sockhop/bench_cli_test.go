package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// Bench's figures are not checked (no test asserts a speed): only that
// every scenario runs to its end against its child server, verifies what
// arrived and reports in the documented format.
func TestBenchScenarios(t *testing.T) {
	for _, tc := range []struct {
		args []string
		unit string
	}{
		{[]string{"--scenario", "s1", "--n", "2000"}, "msg/s"},
		{[]string{"--scenario", "s1", "--n", "2000", "--mode", "json", "--decode", "map"}, "msg/s"},
		{[]string{"--scenario", "s2seq", "--n", "200", "--transport", "unix"}, "rt/s"},
		{[]string{"--scenario", "s2par", "--n", "1000", "--inflight", "8", "--mode", "json"}, "rt/s"},
		{[]string{"--scenario", "s3", "--n", "8", "--size", "65536"}, "MiB/s"},
		{[]string{"--scenario", "s3", "--n", "8", "--size", "65536", "--mode", "json"}, "MiB/s"},
		{[]string{"--scenario", "s4", "--n", "100", "--clients", "5"}, "deliv/s"},
		{[]string{"--scenario", "s5", "--clients", "20"}, "KB/conn"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := sockhopRun(t, "", append([]string{"bench", "--json"}, tc.args...)...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			var res map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || strings.Count(r.stdout, "\n") != 1 {
				t.Fatalf("output is not one JSON line: %q (%v)", r.stdout, err)
			}
			for _, k := range []string{"scenario", "mode", "transport", "value", "unit", "n", "secs", "client_cpu_us_per_unit", "server_cpu_us_per_unit"} {
				if _, ok := res[k]; !ok {
					t.Errorf("no %q in %s", k, r.stdout)
				}
			}
			if res["unit"] != tc.unit || res["scenario"] != tc.args[1] {
				t.Errorf("scenario %v, unit %v in %s", res["scenario"], res["unit"], r.stdout)
			}
			_, hasP50 := res["p50_us"]
			if latency := strings.HasPrefix(tc.args[1], "s2"); hasP50 != latency {
				t.Errorf("p50_us present: %v, for %s", hasP50, tc.args[1])
			}
		})
	}
}

func TestBenchReadable(t *testing.T) {
	r := sockhopRun(t, "", "bench", "--scenario", "s2seq", "--n", "100")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"s2seq sequential request/reply, binary mode over tcp: ", " rt/s (100 round trips in ", "latency: p50 ", "cpu per round trip: client side "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--scenario", "s9"},
		{"bench", "--mode", "xml"},
		{"bench", "--transport", "udp"},
		{"bench", "--inflight", "0"},
		{"bench", "--transport", "unix", "--port", "5000"},
		{"bench", "--size", "999999999"},
		{"bench", "extra"},
	} {
		r := sockhopRun(t, "", args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", args, r.code, r.stdout)
		}
		oneErrorLine(t, r)
	}
	r := sockhopRun(t, "", "bench", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Examples:\n  sockhop bench") || !strings.Contains(r.stdout, "--scenario") {
		t.Errorf("bench --help: exit %d, output %q", r.code, r.stdout)
	}
}
