package service

import (
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/cbkgate/cbkgate/internal/apierr"
)

// maxListsPerCaller bounds the Lists one caller identity runs at once. Each
// may hold an upstream stream (a connection, a read buffer, a goroutine),
// so without a bound one caller could tie up the process's upstream
// connections and memory for everyone; 128 is far above what one client
// reading its listings needs.
const maxListsPerCaller = 128

// listSlots counts the Lists running per caller. Entries go when their
// count returns to 0, so it holds only callers with a List running.
type listSlots struct {
	mu      sync.Mutex
	running map[string]int
}

// acquire takes a slot for caller, or returns the RESOURCE_EXHAUSTED error
// that refuses the List. Call the returned release when the List ends.
func (l *listSlots) acquire(caller string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running[caller] >= maxListsPerCaller {
		return nil, apierr.New(codes.ResourceExhausted, apierr.ReasonTooManyLists,
			"this caller already has as many Lists running as it may; finish or cancel one first")
	}
	if l.running == nil {
		l.running = map[string]int{}
	}
	l.running[caller]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.running[caller]--; l.running[caller] <= 0 {
			delete(l.running, caller)
		}
	}, nil
}
