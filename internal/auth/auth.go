// Package auth decides who may call cbkgate and which ChatBotKit secret a
// call spends upstream.
//
// There are two families of mode. In pass-through mode cbkgate holds no
// secret: every call carries "authorization: Bearer <ChatBotKit secret>",
// which is forwarded upstream as is and checked there; cbkgate only insists
// that it is present and well formed, so that a call without one never
// reaches upstream. In held-secret modes cbkgate spends its own secret, so
// it must first know the caller: by an API key sent as a Bearer value, by a
// verified TLS client certificate, or not at all when the operator has said
// so explicitly.
//
// The same rules are applied to gRPC calls (interceptors) and to HTTP
// callers of the JSON gateway (HTTPMiddleware). The gateway reaches the gRPC
// server over an in-process connection; in held-secret modes calls on that
// connection are let in because the HTTP layer has already authenticated
// them.
//
// Nothing here logs, and no error message carries the characters of a
// presented credential.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// Options selects the authentication mode. See New for the combinations it
// accepts.
type Options struct {
	// PassThrough: no upstream secret is held. Each call must carry
	// "authorization: Bearer <ChatBotKit secret>", forwarded upstream as is.
	PassThrough bool
	// APIKeys are the keys a caller may present as "authorization: Bearer
	// <key>" in held-secret modes.
	APIKeys []secret.Value
	// AcceptClientCerts lets in, in held-secret modes, a caller whose TLS
	// connection has a verified client certificate chain. The TLS
	// configuration (ClientCAs, ClientAuth) is the server's business; this
	// package only looks at the verified chains.
	AcceptClientCerts bool
	// AllowUnauthenticated lets every caller in, in held-secret modes (the
	// operator's explicit choice, or dev mode).
	AllowUnauthenticated bool
	// TrustedPeer reports whether a gRPC connection comes from cbkgate's own
	// in-process JSON gateway. In held-secret modes such calls are let in
	// (HTTPMiddleware has authenticated the HTTP caller); in pass-through
	// mode they still need the Bearer value, which the gateway forwards.
	// nil means no peer is trusted.
	TrustedPeer func(net.Addr) bool
	// OnHTTPRefused, if set, is told of every HTTP request HTTPMiddleware
	// refuses, with the reason it answered. Such a request never reaches
	// the gRPC server, so this is where it can be logged. The reason never
	// carries a presented credential.
	OnHTTPRefused func(r *http.Request, reason string)
}

// Authenticator applies one authentication mode to gRPC calls and HTTP
// requests. It is safe for concurrent use.
type Authenticator struct {
	passThrough bool
	allowAll    bool
	acceptCerts bool
	// keyDigests are SHA-256 digests of the API keys: comparing digests of
	// equal length hides the keys' lengths, and the keys themselves are not
	// kept.
	keyDigests    [][sha256.Size]byte
	trustedPeer   func(net.Addr) bool
	onHTTPRefused func(*http.Request, string)
}

// New checks opts and builds an Authenticator. It refuses combinations that
// contradict each other or that would silently not mean what they say:
// pass-through with API keys, client certificates or AllowUnauthenticated
// (the caller's Bearer value is its ChatBotKit secret, so there is nothing
// else to check); AllowUnauthenticated with API keys or client
// certificates; an API key that is empty or could never be sent as a
// Bearer value; and a held-secret mode with no way for
// anyone to authenticate and AllowUnauthenticated false.
func New(opts Options) (*Authenticator, error) {
	a := &Authenticator{
		passThrough:   opts.PassThrough,
		allowAll:      opts.AllowUnauthenticated,
		acceptCerts:   opts.AcceptClientCerts,
		trustedPeer:   opts.TrustedPeer,
		onHTTPRefused: opts.OnHTTPRefused,
	}
	for i, k := range opts.APIKeys {
		if k.IsZero() {
			return nil, fmt.Errorf("auth: API key %d of %d is empty", i+1, len(opts.APIKeys))
		}
		if !visibleASCII(k.Reveal()) {
			// It could never arrive as a well-formed Bearer value.
			return nil, fmt.Errorf("auth: API key %d of %d contains spaces or characters other than printable ASCII", i+1, len(opts.APIKeys))
		}
		a.keyDigests = append(a.keyDigests, sha256.Sum256([]byte(k.Reveal())))
	}
	hasKeys := len(a.keyDigests) > 0
	switch {
	case opts.PassThrough && (hasKeys || opts.AcceptClientCerts || opts.AllowUnauthenticated):
		return nil, errors.New("auth: pass-through mode takes no API keys, client certificates or AllowUnauthenticated: each caller's Bearer value is its ChatBotKit secret")
	case opts.PassThrough:
	case opts.AllowUnauthenticated && (hasKeys || opts.AcceptClientCerts):
		return nil, errors.New("auth: AllowUnauthenticated contradicts API keys or client certificates: either callers authenticate or they do not")
	case !opts.AllowUnauthenticated && !hasKeys && !opts.AcceptClientCerts:
		return nil, errors.New("auth: a held secret with no API keys and no client certificates would be spent on behalf of anyone: configure one, or set AllowUnauthenticated")
	}
	return a, nil
}

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

// UnaryInterceptor authenticates unary calls and puts the upstream secret
// into the handler's context (see UpstreamSecret). A refused call ends with
// UNAUTHENTICATED and never reaches the handler.
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
// stream.Context() carries the upstream secret.
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
	if !a.passThrough && (a.allowAll || a.fromTrustedPeer(ctx)) {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	upstream, msg := a.check(credentialsSeen{
		authorization: md.Get("authorization"),
		verifiedCert:  verifiedPeerCert(ctx),
		http:          false,
	})
	if msg != "" {
		return nil, status.Error(codes.Unauthenticated, msg)
	}
	return WithUpstreamSecret(ctx, upstream), nil
}

func (a *Authenticator) fromTrustedPeer(ctx context.Context) bool {
	if a.trustedPeer == nil {
		return false
	}
	p, ok := peer.FromContext(ctx)
	return ok && p.Addr != nil && a.trustedPeer(p.Addr)
}

func verifiedPeerCert(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(ti.State.VerifiedChains) > 0
}

// HTTPMiddleware applies the same rules to HTTP callers of the JSON gateway:
// the Authorization header stands for the metadata, r.TLS.VerifiedChains
// for the peer's certificate. Wrap only the gateway routes with it, not
// /healthz, /readyz or /openapi.json. A refused request gets 401 with a JSON
// google.rpc.Status body, as the gateway writes its own errors. In
// pass-through mode only the presence and form of the Bearer value are
// checked here; the gRPC side forwards it. CORS preflight requests pass
// unauthenticated: browsers never attach credentials to them.
func (a *Authenticator) HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isPreflight(r) || (!a.passThrough && a.allowAll) {
			next.ServeHTTP(w, r)
			return
		}
		_, msg := a.check(credentialsSeen{
			authorization: r.Header.Values("Authorization"),
			verifiedCert:  r.TLS != nil && len(r.TLS.VerifiedChains) > 0,
			http:          true,
		})
		if msg != "" {
			a.writeUnauthenticated(w, msg)
			if a.onHTTPRefused != nil {
				a.onHTTPRefused(r, msg)
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions &&
		r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

func (a *Authenticator) writeUnauthenticated(w http.ResponseWriter, msg string) {
	body, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(&spb.Status{
		Code:    int32(codes.Unauthenticated),
		Message: msg,
	})
	if err != nil {
		// Cannot happen for this message; keep the response well formed anyway.
		body = []byte(`{"code":16,"message":"unauthenticated","details":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if a.passThrough || len(a.keyDigests) > 0 {
		h.Set("WWW-Authenticate", `Bearer realm="cbkgate"`)
	}
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(body)
}

// credentialsSeen is what a call presented, from either transport.
type credentialsSeen struct {
	authorization []string // every authorization value sent
	verifiedCert  bool     // the TLS peer presented a chain that verified
	http          bool     // for wording: header rather than metadata
}

// check decides a call in the configured mode (trusted peers and
// AllowUnauthenticated are handled by the callers). It returns the secret to
// spend upstream (zero in held-secret modes), or a non-empty message for
// UNAUTHENTICATED. Messages never include a presented value.
func (a *Authenticator) check(c credentialsSeen) (secret.Value, string) {
	if !a.passThrough && a.acceptCerts && c.verifiedCert {
		// A verified certificate is enough on its own; any Authorization
		// value is then irrelevant, since the held secret goes upstream.
		return "", ""
	}
	if a.passThrough || len(a.keyDigests) > 0 {
		bearer, msg := a.bearer(c)
		if msg != "" {
			return "", msg
		}
		if a.passThrough {
			return secret.Value(bearer), ""
		}
		if a.validKey(bearer) {
			return "", ""
		}
		return "", "invalid API key"
	}
	// Client certificates only, and none verified.
	return "", "a verified TLS client certificate is required: connect with a certificate signed by the configured client CA"
}

// bearer extracts the one Bearer value: "Bearer <value>", scheme in any
// case, one space, one non-empty value of visible ASCII characters.
func (a *Authenticator) bearer(c credentialsSeen) (string, string) {
	what, name := "metadata", "authorization"
	if c.http {
		what, name = "header", "Authorization"
	}
	switch len(c.authorization) {
	case 0:
		return "", "missing " + name + " " + what + ": send `" + name + ": Bearer <" + a.credentialName() + ">`" + a.certHint()
	case 1:
	default:
		return "", "more than one " + name + " " + what + " value: send exactly one `" + name + ": Bearer <" + a.credentialName() + ">`"
	}
	scheme, value, ok := strings.Cut(c.authorization[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || value == "" || !visibleASCII(value) {
		return "", "malformed " + name + " " + what + ": want `" + name + ": Bearer <" + a.credentialName() + ">` with exactly one value after the scheme"
	}
	return value, ""
}

func (a *Authenticator) credentialName() string {
	if a.passThrough {
		return "ChatBotKit secret"
	}
	return "API key"
}

func (a *Authenticator) certHint() string {
	if !a.passThrough && a.acceptCerts {
		return ", or connect with a TLS client certificate signed by the configured client CA"
	}
	return ""
}

// visibleASCII reports whether v is all printable ASCII other than space,
// which is what a Bearer token and every ChatBotKit secret and API key
// consists of. It also rejects a second value after another space.
func visibleASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}

// validKey compares the presented key's digest with every key's digest in
// constant time, with no early exit, so neither which key matched nor how
// long the keys are can be learned from timing.
func (a *Authenticator) validKey(presented string) bool {
	d := sha256.Sum256([]byte(presented))
	match := 0
	for i := range a.keyDigests {
		match |= subtle.ConstantTimeCompare(d[:], a.keyDigests[i][:])
	}
	return match == 1
}

type upstreamSecretKey struct{}

// UpstreamSecret returns the ChatBotKit secret a call must spend upstream:
// the caller's Bearer value in pass-through mode, the zero Value otherwise
// (the REST client then uses the held secret).
func UpstreamSecret(ctx context.Context) secret.Value {
	v, _ := ctx.Value(upstreamSecretKey{}).(secret.Value)
	return v
}

// WithUpstreamSecret returns a context whose UpstreamSecret is v. The
// interceptors use it; so may tests.
func WithUpstreamSecret(ctx context.Context, v secret.Value) context.Context {
	return context.WithValue(ctx, upstreamSecretKey{}, v)
}
