//go:build race

package wire

// raceEnabled is set under -race, where sync.Pool drops items at random
// (to expose misuse), so pooled scanners are reallocated and allocation
// counts are not exact.
const raceEnabled = true
