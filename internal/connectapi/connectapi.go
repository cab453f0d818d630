// Package connectapi serves TokenService to Connect and gRPC-Web clients
// (browsers and Node with generated TypeScript, curl with JSON) on the HTTP
// listener, at /cbkgate.token.v1.TokenService/<Method>.
//
// connectrpc.com/vanguard transcodes each such request into a gRPC call,
// which goes to cbkgate's own TokenService over the in-process hop the
// JSON gateway uses too (a gRPC server with the same interceptors as the
// gRPC port's). So a Connect call passes exactly the interceptors,
// limits, logs and metrics of any other call, and its
// error details arrive as the Connect or gRPC-Web protocol carries them.
//
// Why not grpc.Server.ServeHTTP, which vanguardgrpc uses: grpc-go's
// GracefulStop cancels every call served through ServeHTTP at once instead
// of letting it finish, which would break the drain promise (calls in flight
// finish within --shutdown-timeout). A real HTTP/2 connection is drained
// like any other.
package connectapi

import (
	"context"
	"errors"
	"log"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"time"

	"connectrpc.com/vanguard"
	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/telemetry"
)

// Prefix is the path under which the Connect and gRPC-Web routes live.
const Prefix = "/cbkgate.token.v1.TokenService/"

// Options configures the handler.
type Options struct {
	// Dial opens a connection to cbkgate's own gRPC server (plaintext,
	// HTTP/2 prior knowledge).
	Dial func(ctx context.Context) (net.Conn, error)
	// MaxMessageBytes caps one request message, after decompression when
	// it came compressed.
	MaxMessageBytes uint32
	// OnForward, if set, is called with each request transcoded into a gRPC
	// call, just before it goes to the gRPC server (telemetry: the request
	// reached gRPC, whose interceptors log it).
	OnForward func(*http.Request)
	// ErrorLog receives what the proxy to the gRPC server reports (a
	// stream cut as the server shuts down); nil is the standard logger,
	// plain text outside the configured log format.
	ErrorLog *log.Logger
}

// forwardedHeaders are the request headers that go on to the gRPC server,
// in their canonical form: the gRPC protocol's own, and the metadata
// cbkgate reads (only authorization, x-request-id, traceparent and
// tracestate are taken from HTTP into gRPC).
var forwardedHeaders = map[string]bool{
	"Content-Type":            true,
	"Te":                      true,
	"Grpc-Timeout":            true,
	"Grpc-Encoding":           true,
	"Grpc-Accept-Encoding":    true,
	"User-Agent":              true,
	"Authorization":           true,
	telemetry.RequestIDHeader: true,
	"Traceparent":             true,
	"Tracestate":              true,
}

// New returns the handler of the Connect and gRPC-Web routes. It expects to
// be mounted at Prefix behind the HTTP layer's CORS and authentication.
func New(opts Options) (http.Handler, error) {
	if opts.Dial == nil {
		return nil, errors.New("connectapi: Options.Dial is nil")
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return opts.Dial(ctx)
		},
		IdleConnTimeout: 5 * time.Minute,
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			// The gRPC call line names Connect and gRPC-Web calls by it.
			pr.Out.URL.Host = telemetry.ConnectHopAuthority
			pr.Out.Host = telemetry.ConnectHopAuthority
			for k := range pr.Out.Header {
				if !forwardedHeaders[textproto.CanonicalMIMEHeaderKey(k)] {
					pr.Out.Header.Del(k)
				}
			}
			// The caller the HTTP layer authenticated, as the JSON gateway
			// hands it over (auth.GatewayMetadata); any client value went
			// with the headers dropped above.
			if id := auth.Caller(pr.In.Context()); id != "" {
				pr.Out.Header.Set(auth.GatewayCallerKey, id)
			}
			// And the address the HTTP listener accepted, for the log.
			telemetry.SetHopPeer(pr.In.Context(), pr.Out.Header)
		},
		Transport: transport,
		// Every message of a streamed List goes out as it arrives.
		FlushInterval: -1,
		ErrorHandler:  unavailable,
		ErrorLog:      opts.ErrorLog,
	}
	var forward http.Handler = proxy
	if opts.OnForward != nil {
		forward = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			opts.OnForward(r)
			proxy.ServeHTTP(w, r)
		})
	}
	svc := vanguard.NewService(tokenv1.TokenService_ServiceDesc.ServiceName, forward,
		vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
		vanguard.WithTargetCodecs(vanguard.CodecProto),
		vanguard.WithMaxMessageBufferBytes(opts.MaxMessageBytes),
	)
	t, err := vanguard.NewTranscoder([]*vanguard.Service{svc})
	if err != nil {
		return nil, err
	}
	b, err := newBoundary(t, int(opts.MaxMessageBytes))
	if err != nil {
		return nil, err
	}
	return connectByDefault(b), nil
}

// connectByDefault marks a POST with a Connect unary content type as the
// Connect protocol when the client left out Connect-Protocol-Version, as
// connect-go's own servers accept it: vanguard would otherwise take it for
// a REST call, and no REST route lives under Prefix. So
// `curl -H 'Content-Type: application/json' -d '{...}' .../Create` works.
func connectByDefault(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && (mt == "application/json" || mt == "application/proto") {
				r.Header.Set("Connect-Protocol-Version", "1")
			}
		}
		next.ServeHTTP(w, r)
	})
}

// unavailable answers in the gRPC protocol (which vanguard turns into the
// client's) when the gRPC server cannot be reached: it is draining or gone.
// The cause stays out of the answer, as every internal error does.
func unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		return // the client has gone; nobody reads an answer
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(codes.Unavailable)))
	h.Set("Grpc-Message", "cbkgate is not taking calls")
	w.WriteHeader(http.StatusOK)
}
