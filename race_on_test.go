//go:build race

package sockhop

// raceEnabled tells load tests that the race detector is on.
const raceEnabled = true
