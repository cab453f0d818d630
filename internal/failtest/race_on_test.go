//go:build race

package failtest

// raceEnabled: the race detector's shadow memory counts in RSS (about four
// times the heap), so RSS bounds are checked only without it; heap bounds
// always are.
const raceEnabled = true
