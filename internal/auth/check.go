package auth

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/secret"
)

// Challenge is the WWW-Authenticate value of every HTTP 401 cbkgate
// answers, whoever refused the call (cbkgate, or ChatBotKit in
// pass-through mode), so that clients see one scheme and one realm.
const Challenge = `Bearer realm="cbkgate"`

// Methods that need no credentials: load balancers probe health, and
// grpcurl discovers the API through reflection. Neither reveals a secret or
// spends one.
var exemptPrefixes = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

func exempt(fullMethod string) bool {
	for _, p := range exemptPrefixes {
		if strings.HasPrefix(fullMethod, p) {
			return true
		}
	}
	return false
}

// UnaryInterceptor authenticates unary calls and puts the caller (see
// Caller) and the upstream secret (see UpstreamSecret) into the handler's
// context. A refused call ends with UNAUTHENTICATED and never reaches the
// handler.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorizeGRPC(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streaming calls: the handler's
// stream.Context() carries the caller and the upstream secret.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorizeGRPC(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

// contextStream replaces a ServerStream's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

func (a *Authenticator) authorizeGRPC(ctx context.Context, fullMethod string) (context.Context, error) {
	if exempt(fullMethod) {
		return ctx, nil
	}
	creds := a.creds.Load()
	// Key by key: metadata.FromIncomingContext would copy all of it.
	var d decision
	if a.fromTrustedPeer(ctx) {
		d = a.decideGateway(ctx, creds)
	} else {
		d = a.decide(creds, presented{
			authorization: metadata.ValueFromIncomingContext(ctx, "authorization"),
			cert:          verifiedPeerCert(ctx),
		})
	}
	if d.refusal != nil {
		return nil, d.refusal.Err()
	}
	return d.apply(ctx), nil
}

func (a *Authenticator) fromTrustedPeer(ctx context.Context) bool {
	if a.trustedPeer == nil {
		return false
	}
	p, ok := peer.FromContext(ctx)
	return ok && p.Addr != nil && a.trustedPeer(p.Addr)
}

func verifiedPeerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(grpccreds.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// HTTPMiddleware applies the same rules to HTTP callers of the JSON gateway:
// the Authorization header stands for the metadata, r.TLS.VerifiedChains
// for the peer's certificate. An admitted request goes on with its caller
// in the request context, which GatewayMetadata hands to the gRPC server.
// Wrap only the gateway routes with it, not /healthz, /readyz or
// /openapi.json. A refused request gets 401 with the one Challenge and a
// JSON google.rpc.Status body, as the gateway writes its own errors. In
// pass-through mode only the presence and form of the Bearer value are
// checked here; the gRPC side forwards it. CORS preflight requests pass
// unauthenticated: browsers never attach credentials to them.
func (a *Authenticator) HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropGatewayHeaders(r.Header)
		if IsPreflight(r) {
			next.ServeHTTP(w, r)
			return
		}
		d := a.decide(a.creds.Load(), presented{
			authorization: r.Header.Values("Authorization"),
			cert:          verifiedHTTPCert(r),
			http:          true,
		})
		if d.refusal != nil {
			writeUnauthenticated(w, d.refusal)
			if a.onHTTPRefused != nil {
				a.onHTTPRefused(r, d.reason(), d.refusal.Message())
			}
			return
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), d.caller)))
	})
}

func verifiedHTTPCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// IsPreflight reports whether r is a CORS preflight: an OPTIONS request
// from a browser page (Origin) asking about a method. It carries no
// credentials, so authentication lets it through and the CORS layer
// answers it.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions &&
		r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// writeUnauthenticated answers 401 with the status as JSON, ErrorInfo
// included.
func writeUnauthenticated(w http.ResponseWriter, st *status.Status) {
	body, err := protojson.Marshal(st.Proto())
	if err != nil {
		// Cannot happen for this message; keep the response well formed anyway.
		body = []byte(`{"code":16,"message":"unauthenticated"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("WWW-Authenticate", Challenge)
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(body)
}

// presented is what a call presented, from either transport.
type presented struct {
	authorization []string          // every authorization value sent
	cert          *x509.Certificate // the leaf of a verified client chain, or nil
	http          bool              // for wording: header rather than metadata
}

// decision is the outcome for one call: who it is and what it spends
// upstream, or why it is refused.
type decision struct {
	caller   string
	upstream secret.Value
	refusal  *status.Status
}

func (d decision) apply(ctx context.Context) context.Context {
	return WithCaller(WithUpstreamSecret(ctx, d.upstream), d.caller)
}

func refuse(reason, msg string) decision {
	return decision{refusal: apierr.Status(codes.Unauthenticated, reason, msg)}
}

// reason is the ErrorInfo reason of a refusal.
func (d decision) reason() string {
	for _, det := range d.refusal.Details() {
		if ei, ok := det.(*errdetails.ErrorInfo); ok {
			return ei.GetReason()
		}
	}
	return apierr.ReasonInvalidCredentials
}

// decide applies the mode to what a call presented, with the credentials
// in force when it started. Messages never include a presented value.
func (a *Authenticator) decide(c *credentials, p presented) decision {
	switch {
	case a.allowAll:
		return decision{caller: anonymousCaller, upstream: c.secret}
	case a.passThrough:
		bearer, refusal := a.bearer(p)
		if refusal != nil {
			return decision{refusal: refusal}
		}
		return decision{caller: "bearer:" + identityDigest([]byte(bearer)), upstream: secret.Value(bearer)}
	case a.acceptCerts && p.cert != nil:
		// A verified certificate is enough on its own; any Authorization
		// value is then irrelevant, since the held secret goes upstream.
		return decision{caller: "cert:" + certName(p.cert), upstream: c.secret}
	case a.acceptKeys:
		bearer, refusal := a.bearer(p)
		if refusal != nil {
			return decision{refusal: refusal}
		}
		name, ok := matchKey(c.keys, bearer)
		if !ok {
			return refuse(apierr.ReasonInvalidCredentials, "invalid API key")
		}
		return decision{caller: "key:" + name, upstream: c.secret}
	default:
		// Client certificates only, and none verified.
		return refuse(apierr.ReasonMissingCredentials, "a verified TLS client certificate is required: connect with a certificate signed by the configured client CA")
	}
}

// bearer extracts the one Bearer value: "Bearer <value>", scheme in any
// case, one or more spaces (RFC 6750's 1*SP), one non-empty value of
// visible ASCII characters.
func (a *Authenticator) bearer(p presented) (string, *status.Status) {
	what, name := "metadata", "authorization"
	if p.http {
		what, name = "header", "Authorization"
	}
	want := "`" + name + ": Bearer <" + a.credentialName() + ">`"
	switch len(p.authorization) {
	case 0:
		return "", refuse(apierr.ReasonMissingCredentials, "missing "+name+" "+what+": send "+want+a.certHint()).refusal
	case 1:
	default:
		return "", refuse(apierr.ReasonInvalidCredentials, "more than one "+name+" "+what+" value: send exactly one "+want).refusal
	}
	scheme, value, ok := strings.Cut(p.authorization[0], " ")
	value = strings.TrimLeft(value, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || value == "" || !visibleASCII(value) {
		return "", refuse(apierr.ReasonInvalidCredentials, "malformed "+name+" "+what+": want "+want+" with exactly one value after the scheme").refusal
	}
	return value, nil
}

func (a *Authenticator) credentialName() string {
	if a.passThrough {
		return "ChatBotKit secret"
	}
	return "API key"
}

func (a *Authenticator) certHint() string {
	if a.acceptCerts {
		return ", or connect with a TLS client certificate signed by the configured client CA"
	}
	return ""
}

type upstreamSecretKey struct{}

// UpstreamSecret returns the ChatBotKit secret a call must spend upstream:
// the caller's Bearer value in pass-through mode, the held secret in force
// when the call started otherwise (the zero Value outside an authenticated
// call: the REST client then uses the secret it was built with).
func UpstreamSecret(ctx context.Context) secret.Value {
	v, _ := ctx.Value(upstreamSecretKey{}).(secret.Value)
	return v
}

// WithUpstreamSecret returns a context whose UpstreamSecret is v. The
// interceptors use it; so do internal/service's tests, which run no
// interceptors.
func WithUpstreamSecret(ctx context.Context, v secret.Value) context.Context {
	return context.WithValue(ctx, upstreamSecretKey{}, v)
}
