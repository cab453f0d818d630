package auth

import "context"

// Anonymous is the caller identity in modes that let every caller in.
const Anonymous = "anonymous"

type callerKey struct{}

// WithCaller returns ctx carrying the authenticated caller's identity, in the
// contract's forms: "key:NAME", "cert:CN", "bearer:HEX8" or "anonymous".
func WithCaller(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// Caller returns the identity WithCaller stored, or "" when the call has not
// been authenticated (health checks, reflection). Logs, audit lines and rate
// limits key on it; it never holds a credential.
func Caller(ctx context.Context) string {
	id, _ := ctx.Value(callerKey{}).(string)
	return id
}
