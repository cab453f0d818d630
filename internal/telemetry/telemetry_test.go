package telemetry

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoute(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/users/u1/tokens":                   RouteTokens,
		"/v1/users/a%2Fb/tokens":                RouteTokens,
		"/v1/users/u1/tokens/tok_1":             RouteToken,
		"/v1/users/u1/tokens/tok_1/extra":       RouteOther,
		"/v1/users//tokens":                     RouteOther,
		"/v1/users/u1/tokens/":                  RouteOther,
		"/v1/users/u1":                          RouteOther,
		"/healthz":                              "/healthz",
		"/readyz":                               "/readyz",
		"/openapi.json":                         "/openapi.json",
		"/cbkgate.token.v1.TokenService/Create": "/cbkgate.token.v1.TokenService/Create",
		"/cbkgate.token.v1.TokenService/Nope":   RouteOther,
		"/metrics":                              RouteOther,
		"/" + strings.Repeat("x", 300):          RouteOther,
	} {
		if got := Route(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("Route(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "A-z_0.9:x": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "a b": false, "a/b": false, "é": false, "a\n": false, `"`: false,
	} {
		if got := ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", id, got, want)
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
