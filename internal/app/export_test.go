package app

import "time"

// SetTimeouts shortens the time limits of servers built from now on, so a
// test sees a limit act without waiting minutes; the returned function
// restores them. Not for parallel tests.
func SetTimeouts(idle, body, stalled time.Duration) (restore func()) {
	saved := timeouts
	timeouts.idle, timeouts.body, timeouts.stalled = idle, body, stalled
	return func() { timeouts = saved }
}
