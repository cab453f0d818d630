package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/secret"
)

// anonymousCaller is the caller identity in modes that let every caller in.
const anonymousCaller = "anonymous"

type callerKey struct{}

// WithCaller returns ctx carrying the authenticated caller's identity, in the
// contract's forms: "key:NAME", "cert:CN", "bearer:HEX16" or "anonymous".
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

// Cert names in the caller identity: a name over maxCertName bytes is
// shortened to at most certNamePrefix bytes, '~' and identityDigest of the
// whole name, maxCertName bytes in all, so two long names that share their
// first 64 bytes still name two callers.
const (
	maxCertName    = 64
	certNamePrefix = 47
)

// certName is a client certificate's name in the caller identity: its
// subject common name, else its first DNS name, else (neither set) its
// fingerprint. The identity travels in gRPC metadata and log lines, so
// bytes outside printable ASCII become '?'. Because that replacement, like
// shortening, maps many names to one, a name that needed either (or that
// holds '~', and so could pose as a shortened one) takes the shortened
// form with its digest: any two different names keep two identities.
func certName(c *x509.Certificate) string {
	n := c.Subject.CommonName
	if n == "" && len(c.DNSNames) > 0 {
		n = c.DNSNames[0]
	}
	if n == "" {
		return "sha256:" + identityDigest(c.Raw)
	}
	if len(n) <= maxCertName && plainASCII(n) {
		return n
	}
	cut := min(len(n), certNamePrefix)
	// Never split a UTF-8 character: cut before the one byte 47 is in.
	for cut > 0 && cut < len(n) && !utf8.RuneStart(n[cut]) {
		cut--
	}
	b := []byte(n[:cut])
	for i, ch := range b {
		if ch < ' ' || ch >= '~' {
			b[i] = '?'
		}
	}
	return string(b) + "~" + identityDigest([]byte(n))
}

// plainASCII reports whether s is printable ASCII without '~'.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] >= '~' {
			return false
		}
	}
	return true
}

// identityDigest is the digest in caller identities: the first 16 hex
// digits of v's SHA-256. 64 bits, because two bearers sharing 32 bits were
// found in ~92,000 tries, and would have shared one rate bucket and one
// audit identity.
func identityDigest(v []byte) string {
	d := sha256.Sum256(v)
	return hex.EncodeToString(d[:8])
}
