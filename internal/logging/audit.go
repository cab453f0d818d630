package logging

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/telemetry"
)

// auditMessage is the message of every audit line.
const auditMessage = "audit"

// Audit actions, by gRPC method.
var auditActions = map[string]string{
	"/cbkgate.token.v1.TokenService/Create": "token.create",
	"/cbkgate.token.v1.TokenService/Update": "token.update",
	"/cbkgate.token.v1.TokenService/Delete": "token.delete",
}

// Attribute keys of an audit line.
const (
	keyAction  = "action"
	keyUserID  = "user_id"
	keyTokenID = "token_id"
	// keyIdempotencyKey is a Create's request_id (its idempotency key),
	// apart from the line's request_id, the call's x-request-id.
	keyIdempotencyKey = "idempotency_key"
)

type userIDGetter interface{ GetUserId() string }
type tokenIDGetter interface{ GetTokenId() string }
type idGetter interface{ GetId() string }
type requestIDGetter interface{ GetRequestId() string }

// audit writes the audit line of a Create, Update or Delete that reached
// the gRPC server, allowed or refused: who (caller) did what (action) to
// which token (user_id, token_id: for a create, the new id when there is
// one) and how it ended (code). Never the token's value: only ids are read
// from the messages.
func audit(ctx context.Context, l *slog.Logger, method string, req, resp any, err error, c *call) {
	action, ok := auditActions[method]
	if !ok {
		return
	}
	var user, token string
	if r, ok := req.(userIDGetter); ok {
		user = r.GetUserId()
	}
	if r, ok := req.(tokenIDGetter); ok {
		token = r.GetTokenId()
	}
	if r, ok := resp.(idGetter); ok && err == nil && token == "" {
		token = r.GetId()
	}
	var idemKey string
	if r, ok := req.(requestIDGetter); ok {
		idemKey = r.GetRequestId()
	}
	writeAudit(ctx, l, action, user, token, c.callerOrNone(), status.Code(err), idemKey)
}

func writeAudit(ctx context.Context, l *slog.Logger, action, user, token, caller string, code codes.Code, idemKey string) {
	if !l.Enabled(ctx, slog.LevelInfo) {
		return // before the attributes are made
	}
	attrs := []slog.Attr{
		slog.String(keyAction, action),
		slog.String(keyUserID, truncate(user, maxID)),
		slog.String(keyTokenID, truncate(token, maxID)),
		slog.String(keyCaller, caller),
		slog.String(keyCode, code.String()),
	}
	if idemKey != "" {
		// A refused call's request_id was never validated: bounded
		// like an id.
		attrs = append(attrs, slog.String(keyIdempotencyKey, truncate(idemKey, maxID)))
	}
	l.LogAttrs(ctx, slog.LevelInfo, auditMessage, attrs...)
}

// Auditor returns what writes the audit line of a write cbkgate makes on a
// caller's behalf within its call (a reconciliation's deletes), under the
// call's caller and request id.
func Auditor(l *slog.Logger) func(ctx context.Context, action, userID, tokenID string, code codes.Code) {
	return func(ctx context.Context, action, userID, tokenID string, code codes.Code) {
		writeAudit(ctx, l, action, userID, tokenID, auth.Caller(ctx), code, "")
	}
}

// HTTPRefused returns the hook that logs an HTTP request refused before it
// reached gRPC (a bad body, a wrong method or path, CORS, authentication):
// one "http call refused" line with method, route, status, caller and
// request id, and, for a create, update or delete, its audit line (with
// the ids from the path), since the gRPC interceptors never see it.
func HTTPRefused(l *slog.Logger) func(telemetry.HTTPRequest) {
	refused := newLineLimiter()
	return func(ev telemetry.HTTPRequest) {
		r := ev.Request
		ctx := r.Context()
		caller := ev.Caller
		if caller == "" {
			caller = unauthenticated
		}
		code := ev.Code
		if code == codes.OK {
			code = apierr.CodeForRefusal(ev.Status)
		}
		level := slog.LevelInfo
		if ev.Status >= 500 {
			level = slog.LevelWarn
		}
		if l.Enabled(ctx, level) {
			attrs := []slog.Attr{
				slog.String(keyTransport, transportHTTP),
				slog.String(keyHTTPMethod, truncate(r.Method, 32)),
				slog.String(keyRoute, ev.Route),
				slog.Int(keyStatus, ev.Status),
				slog.String(keyCode, code.String()),
				durationMS(ev.Duration),
				slog.String(keyCaller, caller),
				slog.String(keyPeer, r.RemoteAddr),
			}
			if ev.ForwardedFor != "" {
				attrs = append(attrs, slog.String(keyForwardedFor, ev.ForwardedFor))
			}
			if ev.Reason != "" {
				attrs = append(attrs, slog.String(keyError, truncate(ev.Reason, maxErrorMessage)))
			}
			refused.Log(ctx, l, level, "http call refused", attrs...)
		}
		if action, user, token, ok := httpAuditTarget(r, ev.Route); ok {
			writeAudit(ctx, l, action, user, token, caller, code, "")
		}
	}
}

// httpAuditTarget names the create, update or delete an HTTP request asked
// for, from its method and path. A Connect or gRPC-Web call names only its
// method in its path: its ids are in the body that was refused.
func httpAuditTarget(r *http.Request, route string) (action, user, token string, ok bool) {
	if action, ok := auditActions[route]; ok && r.Method == http.MethodPost {
		return action, "", "", true
	}
	switch {
	case route == telemetry.RouteTokens && r.Method == http.MethodPost:
		action = "token.create"
	case route == telemetry.RouteToken && r.Method == http.MethodPatch:
		action = "token.update"
	case route == telemetry.RouteToken && r.Method == http.MethodDelete:
		action = "token.delete"
	default:
		return "", "", "", false
	}
	// /v1/users/{user_id}/tokens[/{token_id}], each segment escaped.
	seg := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/users/"), "/")
	user = unescape(seg[0])
	if len(seg) == 3 {
		token = unescape(seg[2])
	}
	return action, user, token, true
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}
