package emulator

// SetMaxTokens lowers e's cap on created tokens (defaultMaxTokens), so that
// a test reaches it.
func SetMaxTokens(e *Emulator, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.maxTokens = n
}
