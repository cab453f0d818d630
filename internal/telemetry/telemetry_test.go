package telemetry

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cbkgate/cbkgate/internal/apierr"
)

func TestRoute(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/users/u1/tokens":                   RouteTokens,
		"/v1/users/a%2Fb/tokens":                RouteTokens,
		"/v1/users/u1/tokens/tok_1":             RouteToken,
		"/v1/users/u1/tokens/tok_1/extra":       routeOther,
		"/v1/users//tokens":                     routeOther,
		"/v1/users/u1/tokens/":                  routeOther,
		"/v1/users/u1":                          routeOther,
		"/v1/users/u1/tokensx":                  routeOther,
		"/v1/users/u1/keys":                     routeOther,
		"/healthz":                              "/healthz",
		"/readyz":                               "/readyz",
		"/openapi.json":                         "/openapi.json",
		"/cbkgate.token.v1.TokenService/Create": "/cbkgate.token.v1.TokenService/Create",
		"/cbkgate.token.v1.TokenService/Nope":   routeOther,
		"/metrics":                              routeOther,
		"/console/":                             RouteConsole,
		"/console":                              RouteConsole,
		"/console/console.js":                   RouteConsole,
		"/console/u1/secret":                    RouteConsole,
		"/consoles":                             routeOther,
		"/" + strings.Repeat("x", 300):          routeOther,
	} {
		if got := routeOf(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "A-z_0.9:x": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "a b": false, "a/b": false, "é": false, "a\n": false, `"`: false,
	} {
		if got := validRequestID(id); got != want {
			t.Errorf("validRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestTracingWanted(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "false"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	} {
		if got := tracingWanted(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("tracingWanted(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// TestObserveStatus: the counters read from a call's final status count
// cbkgate's own refusals, once each, and nothing from ChatBotKit.
func TestObserveStatus(t *testing.T) {
	m := NewMetrics()
	upstream401, _ := status.New(codes.Unauthenticated, "bad secret").WithDetails(&errdetails.ErrorInfo{Domain: "chatbotkit.com", Reason: "UNAUTHENTICATED"})
	for _, err := range []error{
		nil,
		apierr.New(codes.ResourceExhausted, apierr.ReasonRateLimited, "slow down"),
		apierr.New(codes.ResourceExhausted, apierr.ReasonRateLimited, "slow down"),
		apierr.New(codes.ResourceExhausted, apierr.ReasonTooManyStreams, "too many watches"),
		apierr.New(codes.Unauthenticated, apierr.ReasonMissingCredentials, "missing"),
		apierr.New(codes.Unauthenticated, apierr.ReasonInvalidCredentials, "invalid"),
		apierr.New(codes.Unauthenticated, "SOMETHING_NEW", "new reason"),
		status.Error(codes.Unauthenticated, "missing authorization metadata"),
		upstream401.Err(),
		status.Error(codes.NotFound, "nope"),
	} {
		m.observeStatus(err)
	}
	if got := testutil.ToFloat64(m.rateLimited); got != 2 {
		t.Errorf("cbkgate_rate_limited_total = %v, want 2", got)
	}
	for reason, want := range map[string]float64{"MISSING_CREDENTIALS": 2, "INVALID_CREDENTIALS": 1, "OTHER": 1} {
		if got := testutil.ToFloat64(m.authFailures.WithLabelValues(reason)); got != want {
			t.Errorf("cbkgate_auth_failures_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	var nilMetrics *Metrics // metrics off: every hook is a no-op
	nilMetrics.observeStatus(apierr.New(codes.ResourceExhausted, apierr.ReasonRateLimited, "x"))
	nilMetrics.AuthFailure("MISSING_CREDENTIALS")
	nilMetrics.ConfigReload(nil)
	if nilMetrics.UpstreamAttempts() != nil {
		t.Error("metrics off: an upstream hook")
	}
}

// TestGatewayRoute: a call that came over HTTP is named by the route it
// came on: a JSON gateway call by its method's binding in the proto (each
// of them one of the route patterns the HTTP metrics use), a Connect or
// gRPC-Web call by its own path.
func TestGatewayRoute(t *testing.T) {
	const svc = "/cbkgate.token.v1.TokenService/"
	rest := metadata.NewIncomingContext(context.Background(), metadata.Pairs(":authority", "cbkgate-gateway"))
	connect := metadata.NewIncomingContext(context.Background(), metadata.Pairs(":authority", ConnectHopAuthority))
	for _, tc := range []struct {
		ctx           context.Context
		fullMethod    string
		method, route string
		ok            bool
	}{
		{rest, svc + "List", "GET", RouteTokens, true},
		{rest, svc + "Create", "POST", RouteTokens, true},
		{rest, svc + "Update", "PATCH", RouteToken, true},
		{rest, svc + "Delete", "DELETE", RouteToken, true},
		{rest, "/grpc.health.v1.Health/Check", "", "", false},
		{connect, svc + "Create", "POST", svc + "Create", true},
		{connect, svc + "List", "POST", svc + "List", true},
		{connect, "/grpc.health.v1.Health/Check", "", "", false},
	} {
		method, route, ok := GatewayRoute(tc.ctx, tc.fullMethod)
		if method != tc.method || route != tc.route || ok != tc.ok {
			t.Errorf("GatewayRoute(%s) = %s %s %v, want %s %s %v", tc.fullMethod, method, route, ok, tc.method, tc.route, tc.ok)
		}
	}
	if len(gatewayRoutes) != 4 {
		t.Errorf("%d HTTP bindings read from the proto, want TokenService's 4: %v", len(gatewayRoutes), gatewayRoutes)
	}
}

// TestForwardedFor: X-Forwarded-For is logged printable and bounded, every
// value of the header joined.
func TestForwardedFor(t *testing.T) {
	long := strings.Repeat("203.0.113.1, ", 10000)
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"203.0.113.5"}, "203.0.113.5"},
		{[]string{"203.0.113.5", "198.51.100.7"}, "203.0.113.5, 198.51.100.7"},
		{[]string{"a\x00b\r\nc\xffd\u00e9"}, "a?b??c?d??"},
		{[]string{long}, long[:MaxForwardedFor-3] + "..."},
		{[]string{long[:MaxForwardedFor], "x"}, long[:MaxForwardedFor-3] + "..."},
		{[]string{long[:MaxForwardedFor]}, long[:MaxForwardedFor]},
	} {
		got := ForwardedFor(c.in)
		if got != c.want {
			t.Errorf("ForwardedFor(%.40q) = %.60q, want %.60q", c.in, got, c.want)
		}
		if len(got) > MaxForwardedFor {
			t.Errorf("ForwardedFor(%.40q) is %d bytes, over %d", c.in, len(got), MaxForwardedFor)
		}
	}
}
