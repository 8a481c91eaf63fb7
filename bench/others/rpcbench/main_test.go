package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/sockhop/sockhop-go/bench/others/internal/smoke"
)

var bin string

func TestMain(m *testing.M) { os.Exit(smoke.Main(m, "rpcbench", &bin)) }

func TestScenarios(t *testing.T) {
	cases := slices.DeleteFunc(slices.Clone(smoke.Default), func(c smoke.Case) bool { return slices.Contains(c, "s4") })
	smoke.Scenarios(t, bin, "netrpc", cases)
}

// TestNoBroadcast checks that s4 is refused with exit status 2, as
// bench/compare.sh expects of a scenario an implementation cannot run.
func TestNoBroadcast(t *testing.T) {
	stdout, stderr, status := smoke.Run(t, bin, "-json", "-scenario", "s4")
	if status != 2 || stdout != "" || !strings.Contains(stderr, "cannot push") {
		t.Fatalf("status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
}
