// Package secret holds credentials in a type that refuses to be printed.
//
// cbkgate handles three kinds of credential: the upstream ChatBotKit secret,
// the bearer values and API keys callers present, and the secret value of a
// token minted by Create. None of them may reach a log line at any level, so
// they travel as Value, whose every printed or encoded form is a placeholder.
// Code that really needs the characters (an Authorization header, a
// constant-time comparison, a Create response) calls Reveal, which is easy to
// find in review.
package secret

import "log/slog"

// Redacted is what a Value prints as.
const Redacted = "[REDACTED]"

// Value is a credential. The zero value is the empty secret.
type Value string

// Reveal returns the secret's characters. Use it only where they must leave
// the process: an HTTP header, a response message, a comparison.
func (v Value) Reveal() string { return string(v) }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v == "" }

// String implements fmt.Stringer, so %v, %s and %q print the placeholder.
func (v Value) String() string { return Redacted }

// GoString implements fmt.GoStringer, so %#v prints the placeholder too.
func (v Value) GoString() string { return Redacted }

// LogValue implements slog.LogValuer.
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText implements encoding.TextMarshaler, so JSON and other text
// encoders print the placeholder rather than the characters.
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
