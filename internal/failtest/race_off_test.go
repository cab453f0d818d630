//go:build !race

package failtest

const raceEnabled = false
