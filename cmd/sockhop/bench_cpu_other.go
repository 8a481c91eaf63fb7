//go:build !unix

package main

import "time"

// selfCPU is unknown here: bench reports no client CPU.
func selfCPU() time.Duration { return 0 }
