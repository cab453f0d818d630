package app_test

//lint:file-ignore SA1019 the contract requires reflection v1alpha too (older grpcurl and IDEs speak only it); this file proves it is served.

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

const tokenService = "cbkgate.token.v1.TokenService"

// TestHealthAndDiscovery: gRPC health for "" and TokenService, server
// reflection (v1 and v1alpha) without credentials, and the HTTP probes and
// OpenAPI document. The server holds a secret and requires API keys, so
// this also shows these need none.
func TestHealthAndDiscovery(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-health"
	_, up := newEmulator(t, secret)
	keys := writeKeys(t, "key-health-0123456789")
	s := startServer(t, up.URL, gatetest.Held(secret), gatetest.Args("--api-keys-file="+keys))
	cc := s.Dial(nil)

	t.Run("grpc health", func(t *testing.T) {
		hc := healthpb.NewHealthClient(cc)
		for _, svc := range []string{"", tokenService} {
			r, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check(%q) = %v, %v; want SERVING", svc, r, err)
			}
		}
		_, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("Check(unknown service): %v, want NotFound", err)
		}
	})

	t.Run("reflection v1", func(t *testing.T) {
		stream, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer stream.CloseSend()
		if err := stream.Send(&reflectionv1.ServerReflectionRequest{
			MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{},
		}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, svc := range resp.GetListServicesResponse().GetService() {
			names = append(names, svc.GetName())
		}
		for _, want := range []string{tokenService, "grpc.health.v1.Health"} {
			if !slices.Contains(names, want) {
				t.Errorf("reflection lists %v, want %s among them", names, want)
			}
		}

		// The descriptor of TokenService is served too, so grpcurl can call it.
		if err := stream.Send(&reflectionv1.ServerReflectionRequest{
			MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: tokenService},
		}); err != nil {
			t.Fatal(err)
		}
		resp, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(raw, fd); err != nil {
				t.Fatal(err)
			}
			for _, svc := range fd.GetService() {
				if fd.GetPackage()+"."+svc.GetName() == tokenService && len(svc.GetMethod()) == 4 {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("FileContainingSymbol(%s) did not return its service with 4 methods", tokenService)
		}
	})

	t.Run("reflection v1alpha", func(t *testing.T) {
		stream, err := reflectionv1alpha.NewServerReflectionClient(cc).ServerReflectionInfo(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer stream.CloseSend()
		if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{
			MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{},
		}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, svc := range resp.GetListServicesResponse().GetService() {
			names = append(names, svc.GetName())
		}
		if !slices.Contains(names, tokenService) {
			t.Errorf("v1alpha reflection lists %v, want %s", names, tokenService)
		}
	})

	t.Run("http probes and openapi", func(t *testing.T) {
		h := s.httpCaller("")
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, b := h.do(t, http.MethodGet, path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %d %s, want 200", path, resp.StatusCode, b)
			}
		}
		resp, b := h.do(t, http.MethodGet, "/openapi.json", nil)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET /openapi.json: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var doc struct {
			Swagger string                    `json:"swagger"`
			Paths   map[string]map[string]any `json:"paths"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("/openapi.json is not JSON: %v", err)
		}
		if doc.Swagger != "2.0" {
			t.Errorf(`/openapi.json "swagger" = %q, want "2.0"`, doc.Swagger)
		}
		for path, methods := range map[string][]string{
			"/v1/users/{user_id}/tokens":            {"get", "post"},
			"/v1/users/{user_id}/tokens/{token_id}": {"patch", "delete"},
		} {
			for _, m := range methods {
				if _, ok := doc.Paths[path][m]; !ok {
					t.Errorf("/openapi.json lacks %s %s (paths %v)", m, path, mapKeys(doc.Paths))
				}
			}
		}
	})

	// The API itself still needs a key: discovery opened nothing else.
	_, st := s.grpcCaller("").create(t, &tokenv1.CreateRequest{UserId: "u"})
	wantCode(t, "Create without key", st, codes.Unauthenticated)
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
