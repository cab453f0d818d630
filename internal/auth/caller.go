package auth

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/secret"
)

// anonymousCaller is the caller identity in modes that let every caller in.
const anonymousCaller = "anonymous"

type callerKey struct{}

// WithCaller returns ctx carrying the authenticated caller's identity, in the
// contract's forms: "key:NAME", "cert:CN", "bearer:HEX8" or "anonymous".
func WithCaller(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// Caller returns the identity WithCaller stored, or "" when the call has not
// been authenticated (health checks, reflection, refused calls). Logs,
// audit lines and rate limits key on it; it never holds a credential.
func Caller(ctx context.Context) string {
	id, _ := ctx.Value(callerKey{}).(string)
	return id
}

// GatewayCallerKey is the metadata key under which the in-process gateway
// hands the HTTP caller's identity to the gRPC server. The interceptors
// read it only on a connection TrustedPeer vouches for; from anyone else
// it is ignored, and HTTPMiddleware drops any HTTP header the gateway could
// turn into it.
const GatewayCallerKey = "cbkgate-internal-caller"

// GatewayMetadata is the gateway's metadata annotator (for grpc-gateway's
// runtime.WithMetadata): it passes on the caller HTTPMiddleware
// authenticated.
func GatewayMetadata(_ context.Context, r *http.Request) metadata.MD {
	if id := Caller(r.Context()); id != "" {
		return metadata.Pairs(GatewayCallerKey, id)
	}
	return nil
}

// dropGatewayHeaders removes the headers grpc-gateway would forward as
// "cbkgate-..." metadata (its Grpc-Metadata- prefix), so that no HTTP
// client can put a value next to the gateway's own.
func dropGatewayHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "grpc-metadata-cbkgate-") {
			delete(h, k)
		}
	}
}

// decideGateway admits a call from the in-process gateway as the caller
// HTTPMiddleware authenticated. Exactly one identity must come with it:
// none means the call bypassed the middleware, two that something other
// than the gateway added one. In pass-through mode the caller's Bearer
// value is still needed, as the secret to forward.
func (a *Authenticator) decideGateway(ctx context.Context, c *credentials) decision {
	ids := metadata.ValueFromIncomingContext(ctx, GatewayCallerKey)
	if len(ids) != 1 || ids[0] == "" {
		return decision{refusal: apierr.Status(codes.Unauthenticated, apierr.ReasonMissingCredentials,
			"the call came through the gateway without exactly one authenticated caller")}
	}
	d := decision{caller: ids[0], upstream: c.secret}
	if a.passThrough {
		bearer, refusal := a.bearer(presented{authorization: metadata.ValueFromIncomingContext(ctx, "authorization")})
		if refusal != nil {
			return decision{refusal: refusal}
		}
		d.upstream = secret.Value(bearer)
	}
	return d
}
