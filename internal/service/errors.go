package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// errorDomain is the ErrorInfo domain of errors that come from ChatBotKit.
const errorDomain = "chatbotkit.com"

// codeByHTTPStatus is the contract's one mapping from upstream HTTP status
// to gRPC code. Statuses not listed become UNKNOWN, as gRPC's own HTTP
// mapping does: cbkgate does not guess what an unexpected status means.
var codeByHTTPStatus = map[int]codes.Code{
	400: codes.InvalidArgument,
	401: codes.Unauthenticated,
	402: codes.FailedPrecondition,
	403: codes.PermissionDenied,
	404: codes.NotFound,
	408: codes.DeadlineExceeded,
	409: codes.Aborted,
	413: codes.InvalidArgument,
	422: codes.InvalidArgument,
	429: codes.ResourceExhausted,
	500: codes.Internal,
	501: codes.Unimplemented,
	502: codes.Unavailable,
	503: codes.Unavailable,
	504: codes.Unavailable,
}

// status is toStatus with the redaction of the secret the call spends
// upstream (the held one or the caller's own).
func (s *Service) status(ctx context.Context, err error) error {
	return toStatus(ctx, err, s.redactor(ctx))
}

// redactor cleans a string from upstream of the secret the call spends.
func (s *Service) redactor(ctx context.Context) func(string) string {
	cred := auth.UpstreamSecret(ctx)
	return func(v string) string { return s.client.Redact(v, cred) }
}

// Messages of the errors cbkgate makes for upstream failures. They are
// short and generic on purpose: what actually happened (the upstream URL,
// an address, a dial or parse error, a cursor) is none of the caller's
// business and goes to the call's log line instead (apierr.WithLogDetail).
const (
	msgUnreachable = "ChatBotKit could not be reached or did not finish its answer"
	msgTimeout     = "ChatBotKit did not answer in time"
	msgMalformed   = "ChatBotKit's answer could not be used"
	msgInternal    = "internal error"
)

// toStatus turns an error of the REST client into the gRPC status the
// contract names. ctx is the call's context: once the caller has gone or its
// deadline has passed, that is what the status says, whatever error the
// upstream request ended with. redact (nil: none) cleans every string that
// came from upstream before it goes to the caller or the log.
func toStatus(ctx context.Context, err error, redact func(string) string) error {
	if err == nil {
		return nil
	}
	if redact == nil {
		redact = func(s string) string { return s }
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before ChatBotKit answered")
	}
	detail := func() string { return redact(err.Error()) }
	var apiErr *chatbotkit.APIError
	switch {
	case errors.As(err, &apiErr):
		return apiStatus(apiErr, redact)
	case errors.Is(err, context.DeadlineExceeded):
		// The caller's deadline is still ahead, so cbkgate's own bound on
		// an upstream call ran out: ChatBotKit did not answer in time.
		return apierr.WithLogDetail(apierr.Status(codes.Unavailable, apierr.ReasonUpstreamUnavailable, msgTimeout),
			fmt.Sprintf("no answer within %s: %s", upstreamTimeout, detail()))
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.Is(err, chatbotkit.ErrUnavailable):
		return apierr.WithLogDetail(apierr.Status(codes.Unavailable, apierr.ReasonUpstreamUnavailable, msgUnreachable), detail())
	case errors.Is(err, chatbotkit.ErrMalformedResponse), errors.Is(err, chatbotkit.ErrResponseTooLarge):
		return apierr.WithLogDetail(apierr.Status(codes.Internal, apierr.ReasonUpstreamMalformed, msgMalformed), detail())
	case errors.Is(err, chatbotkit.ErrInvalidID), errors.Is(err, chatbotkit.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, chatbotkit.ErrNoCredential):
		return status.Error(codes.Unauthenticated, "no usable ChatBotKit credential for this call")
	default:
		return apierr.WithLogDetail(status.New(codes.Internal, msgInternal), detail())
	}
}

// apiStatus carries an upstream error response to the caller: the upstream
// message as the status message, and its code and HTTP status in ErrorInfo
// so callers can branch on ChatBotKit's own codes.
func apiStatus(e *chatbotkit.APIError, redact func(string) string) error {
	code, ok := codeByHTTPStatus[e.Status]
	if !ok {
		code = codes.Unknown
	}
	st := status.New(code, redact(e.Message))
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   redact(e.Code),
		Domain:   errorDomain,
		Metadata: map[string]string{"http_status": strconv.Itoa(e.Status)},
	}}
	if e.Status == 429 && e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		// Only a broken proto registration can get here; the plain status
		// still has the right code and message.
		return st.Err()
	}
	return withDetails.Err()
}
