package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// benchProfileEnv names a directory; when it is set, `sockhop bench` writes
// a CPU profile of itself (client.pprof) and of its server child
// (server.pprof) there, for `go tool pprof`, and s5's server writes the
// heap it holds for its idle connections (heap.pprof). It is how the engine's hot
// paths were found; it is read from the environment so that the child,
// which inherits it, profiles itself without another flag.
const benchProfileEnv = "SOCKHOP_BENCH_PROFILE"

// startBenchProfile starts the CPU profile of role ("client" or "server")
// when benchProfileEnv is set; the returned func stops and writes it.
func startBenchProfile(role string) (stop func(), err error) {
	dir := os.Getenv(benchProfileEnv)
	if dir == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(dir, role+".pprof"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", benchProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", benchProfileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeHeapProfile writes the heap profile (after a GC) when benchProfileEnv
// is set.
func writeHeapProfile() error {
	dir := os.Getenv(benchProfileEnv)
	if dir == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, "heap.pprof"))
	if err != nil {
		return fmt.Errorf("%s: %w", benchProfileEnv, err)
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}
