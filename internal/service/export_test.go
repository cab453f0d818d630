package service

import (
	"testing"
	"time"
)

// shorten sets createBound and reconcileAfter for one test (and the record
// poll to match); the returned func restores them. Tests that call it must
// not run in parallel.
func shorten(t *testing.T, bound, after time.Duration) (restore func()) {
	t.Helper()
	oldBound, oldAfter, oldPoll := createBound, reconcileAfter, recordPoll
	createBound, reconcileAfter, recordPoll = bound, after, 10*time.Millisecond
	return func() { createBound, reconcileAfter, recordPoll = oldBound, oldAfter, oldPoll }
}
