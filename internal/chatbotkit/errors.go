package chatbotkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Every error the client returns either is an *APIError,
// wraps one of these, or wraps context.Canceled or context.DeadlineExceeded.
var (
	// ErrUnavailable: the upstream could not be reached or did not finish
	// its answer (no connection, reset, TLS failure, a body cut short). The
	// cause is wrapped too.
	ErrUnavailable = errors.New("chatbotkit: upstream unavailable")
	// ErrMalformedResponse: a 2xx body that is not the expected JSON.
	ErrMalformedResponse = errors.New("chatbotkit: malformed upstream response")
	// ErrResponseTooLarge: a body over its cap.
	ErrResponseTooLarge = errors.New("chatbotkit: upstream response too large")
	// ErrInvalidID: a user or token id that cannot be sent as one path
	// segment (empty, "." or ".."). Nothing is sent.
	ErrInvalidID = errors.New("chatbotkit: invalid id")
	// ErrNoCredential: the call carried no usable secret.
	// Nothing is sent.
	ErrNoCredential = errors.New("chatbotkit: no upstream credential")
	// ErrInvalidArgument: any other argument the client refuses before
	// sending (an unknown Order, a negative Take, Config or Meta that is not
	// JSON, a nil yield function).
	ErrInvalidArgument = errors.New("chatbotkit: invalid argument")
)

// APIError is a non-2xx answer from the upstream.
type APIError struct {
	Status     int           // HTTP status
	Code       string        // upstream "code", or the status's standard code
	Message    string        // upstream "message", or http.StatusText
	RetryAfter time.Duration // from the Retry-After header; 0 when absent
}

func (e *APIError) Error() string {
	return fmt.Sprintf("chatbotkit: upstream returned %d %s: %s", e.Status, e.Code, e.Message)
}

// statusCodes are the codes ChatBotKit's SDKs know, used when an error body
// carries none.
var statusCodes = map[int]string{
	http.StatusBadRequest:            "BAD_REQUEST",
	http.StatusUnauthorized:          "NOT_AUTHENTICATED",
	http.StatusPaymentRequired:       "NO_SUBSCRIPTION",
	http.StatusForbidden:             "NOT_AUTHORIZED",
	http.StatusNotFound:              "NOT_FOUND",
	http.StatusMethodNotAllowed:      "METHOD_NOT_ALLOWED",
	http.StatusRequestTimeout:        "TIMEOUT",
	http.StatusConflict:              "CONFLICT",
	http.StatusRequestEntityTooLarge: "CONTENT_TOO_LARGE",
	http.StatusUnprocessableEntity:   "UNPROCESSABLE_ENTITY",
	http.StatusTooManyRequests:       "TOO_MANY_REQUESTS",
	http.StatusInternalServerError:   "INTERNAL_SERVER_ERROR",
	http.StatusNotImplemented:        "NOT_IMPLEMENTED",
	http.StatusBadGateway:            "BAD_GATEWAY",
	http.StatusServiceUnavailable:    "SERVICE_UNAVAILABLE",
	http.StatusGatewayTimeout:        "GATEWAY_TIMEOUT",
}

// unknownCode is the code of a status outside the table whose body names none.
const unknownCode = "UNKNOWN"

func fallbackCode(status int) string {
	if c, ok := statusCodes[status]; ok {
		return c
	}
	return unknownCode
}

func fallbackMessage(status int) string {
	if m := http.StatusText(status); m != "" {
		return m
	}
	return "HTTP status " + strconv.Itoa(status)
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date. An
// absent, unparseable or past value is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		// Clamp before converting so a huge value cannot overflow.
		const maxSecs = float64(365 * 24 * 60 * 60)
		switch {
		case !(secs > 0): // also NaN
			return 0
		case secs > maxSecs:
			secs = maxSecs
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// unavailableError is ErrUnavailable with its cause and what the retry logic
// needs to know about it.
type unavailableError struct {
	op    string
	cause error
	// neverReached: the request provably never reached the upstream, so
	// even a create may be sent again.
	neverReached bool
	// permanent: retrying cannot help (a certificate the client rejects).
	permanent bool
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("%s: %s: %v", ErrUnavailable, e.op, e.cause)
}

// Unwrap exposes ErrUnavailable and the cause. A cause that claims to be a
// context error (net and net/http timeouts do, since Go 1.23) is hidden:
// such an error only reaches here when the caller's own context is still
// live, and it must not be mistaken for the caller's deadline.
func (e *unavailableError) Unwrap() []error {
	if errors.Is(e.cause, context.DeadlineExceeded) || errors.Is(e.cause, context.Canceled) {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.cause}
}

// isDialError reports whether err comes from establishing the connection
// (DNS, connect refused, unreachable, dial timeout).
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isCertError reports whether the client rejected the server's certificate;
// asking again gets the same certificate.
func isCertError(err error) bool {
	var verr *tls.CertificateVerificationError
	return errors.As(err, &verr)
}

// notSentError is an error that ended a request before any of it reached
// the upstream (the caller's context ended before a connection was had, or
// while waiting to retry a request that never reached it).
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// NotSent reports whether err proves that the request it ended never
// reached the upstream: refused before sending (an invalid id or argument,
// no credential), a connection never had, or the caller's context ended
// before anything went out. A create that failed so made no token. Any
// other error, an *APIError included, may have come after the upstream saw
// the request.
func NotSent(err error) bool {
	var ue *unavailableError
	if errors.As(err, &ue) {
		return ue.neverReached
	}
	var ns *notSentError
	if errors.As(err, &ns) {
		return true
	}
	return errors.Is(err, ErrInvalidID) || errors.Is(err, ErrNoCredential) || errors.Is(err, ErrInvalidArgument)
}
