// Package apierr builds the errors cbkgate makes itself (as opposed to the
// ones ChatBotKit answered): a gRPC status whose details start with a
// google.rpc.ErrorInfo in the "cbkgate" domain with a stable upper-case
// reason, so that a client can branch on the reason instead of parsing the
// English message. Every such error is made here, so the domain and the
// reasons have one home.
package apierr

import (
	"errors"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// Domain is the ErrorInfo domain of errors cbkgate makes itself.
const Domain = "cbkgate"

// The stable reasons of cbkgate's own errors (README "Errors"). Clients
// match on these, so a reason is never renamed.
const (
	ReasonInvalidArgument     = "INVALID_ARGUMENT"
	ReasonMissingCredentials  = "MISSING_CREDENTIALS"
	ReasonInvalidCredentials  = "INVALID_CREDENTIALS"
	ReasonRateLimited         = "RATE_LIMITED"
	ReasonUpstreamUnavailable = "UPSTREAM_UNAVAILABLE"
	ReasonUpstreamMalformed   = "UPSTREAM_MALFORMED"
	// ReasonCrossOrigin: a web page on an origin not on --cors-origins.
	ReasonCrossOrigin = "CROSS_ORIGIN"
	// ReasonTooManyStreams: a process-wide cap on streams that need no
	// credentials (Health Watch, reflection) is reached.
	ReasonTooManyStreams = "TOO_MANY_STREAMS"
	// ReasonReaderStalled: a streamed List was cut off because its reader
	// took no message for too long.
	ReasonReaderStalled = "READER_STALLED"
	// ReasonBodyTimeout: an HTTP request body did not arrive in time.
	ReasonBodyTimeout = "BODY_TIMEOUT"
	// ReasonPayloadTooLarge: a request message over 1 MiB, after
	// decompression when it came compressed.
	ReasonPayloadTooLarge = "PAYLOAD_TOO_LARGE"
	// ReasonUnsupportedMediaType: a request body of a type the path does
	// not take.
	ReasonUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	// ReasonNotFound: no route at the request's path on the HTTP port.
	ReasonNotFound = "NOT_FOUND"
	// ReasonMethodNotAllowed: a known path on the HTTP port asked with
	// another method.
	ReasonMethodNotAllowed = "METHOD_NOT_ALLOWED"
	// ReasonCursorStale: a List cursor's token is no longer listed, so
	// where to resume cannot be known exactly.
	ReasonCursorStale = "CURSOR_STALE"
	// ReasonTooManyLists: a caller has as many Lists running as it may.
	ReasonTooManyLists = "TOO_MANY_LISTS"
	// ReasonPermissionDenied: the caller is authenticated, but no grant
	// (--grants-file) lets it make this call for this user.
	ReasonPermissionDenied = "PERMISSION_DENIED"
	// ReasonUpstreamOutcomeUnknown: a Create with a request_id went
	// upstream and no definitive answer came back; a repeat reconciles.
	ReasonUpstreamOutcomeUnknown = "UPSTREAM_OUTCOME_UNKNOWN"
	// ReasonRequestIDReused: a request_id already used with other fields.
	ReasonRequestIDReused = "REQUEST_ID_REUSED"
	// ReasonStateUnavailable: the shared state (--state) could not be
	// read or written, or a record in it could not be decrypted.
	ReasonStateUnavailable = "STATE_UNAVAILABLE"
	// ReasonShuttingDown: the call was still running when cbkgate's
	// shutdown (--shutdown-timeout) cut it off.
	ReasonShuttingDown = "SHUTTING_DOWN"
)

// New returns a status error with code and message whose first detail is
// ErrorInfo{Domain: "cbkgate", Reason: reason}, followed by extra (for
// example a BadRequest or a RetryInfo).
func New(code codes.Code, reason, message string, extra ...protoadapt.MessageV1) error {
	return Status(code, reason, message, extra...).Err()
}

// Status is New as a *status.Status, for callers that need its proto form
// (the HTTP layer writes it as JSON).
func Status(code codes.Code, reason, message string, extra ...protoadapt.MessageV1) *status.Status {
	st := status.New(code, message)
	details := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: Domain}}, extra...)
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		// Only a broken proto registration can get here; the plain status
		// still has the right code and message.
		return st
	}
	return withDetails
}

// WithMetadata is New with ErrorInfo metadata: facts a client can branch
// on without parsing the message (which method, which caller).
func WithMetadata(code codes.Code, reason, message string, metadata map[string]string) error {
	st, err := status.New(code, message).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: metadata})
	if err != nil {
		return status.Error(code, message) // as in Status
	}
	return st.Err()
}

// WithLogDetail returns st as an error that also carries detail, for the
// call's log line only: the caller gets st (a short, generic message), the
// log gets what actually went wrong (an address, a parse error). Read it
// back with LogDetail.
func WithLogDetail(st *status.Status, detail string) error {
	return &detailedError{st: st, detail: detail}
}

// ClientFault returns st as an error that says the client caused it,
// whatever its code: grpc-go answers a request message it cannot read
// (cut short, a second one where one was due, a compressed one that does
// not inflate) INTERNAL, in its own words, before cbkgate can answer. The
// call line keeps the code the client got, but is logged and
// rate-limited as a refusal, not as a server fault.
func ClientFault(st *status.Status) error { return &clientFault{st: st} }

// IsClientFault reports whether err came from ClientFault.
func IsClientFault(err error) bool {
	var f *clientFault
	return errors.As(err, &f)
}

type clientFault struct{ st *status.Status }

func (e *clientFault) Error() string              { return e.st.Err().Error() }
func (e *clientFault) GRPCStatus() *status.Status { return e.st }

// LogDetail returns the detail WithLogDetail attached to err, or "".
func LogDetail(err error) string {
	var d *detailedError
	if errors.As(err, &d) {
		return d.detail
	}
	return ""
}

type detailedError struct {
	st     *status.Status
	detail string
}

// Error is the status's error string: never the detail, which is for the
// log alone.
func (e *detailedError) Error() string { return e.st.Err().Error() }

// GRPCStatus makes grpc-go (and status.FromError) send st as it is.
func (e *detailedError) GRPCStatus() *status.Status { return e.st }

// CodeForRefusal is the gRPC code of the google.rpc.Status that cbkgate's
// HTTP layer answers with each status it refuses a request with (before the
// request reaches gRPC), so that the audit line, the Connect and gRPC-Web
// answers and the JSON body of one refusal name the same code.
func CodeForRefusal(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		// A message over the limit is RESOURCE_EXHAUSTED, as grpc-go
		// answers one on the gRPC port.
		return codes.ResourceExhausted
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return codes.DeadlineExceeded
	case http.StatusInternalServerError:
		return codes.Internal
	}
	return codes.Unknown
}
