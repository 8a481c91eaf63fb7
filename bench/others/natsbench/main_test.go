package main

import (
	"os"
	"testing"

	"github.com/sockhop/sockhop-go/bench/others/internal/smoke"
)

var bin string

func TestMain(m *testing.M) { os.Exit(smoke.Main(m, "natsbench", &bin)) }

func TestScenarios(t *testing.T) { smoke.Scenarios(t, bin, "nats", smoke.Default) }
