package app_test

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// otlpReceiver is an OTLP collector stub on loopback: it accepts trace
// exports over OTLP/HTTP (protobuf) or OTLP/gRPC and keeps every span with
// its resource's service.name.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu      sync.Mutex
	spans   []*tracepb.Span
	service map[string]bool
	exports int
}

func (o *otlpReceiver) keep(req *collectortrace.ExportTraceServiceRequest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.exports++
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				o.service[a.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
}

func (o *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	o.keep(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	var req collectortrace.ExportTraceServiceRequest
	if err != nil || proto.Unmarshal(b, &req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	o.keep(&req)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// trace returns the spans of one trace, by name.
func (o *otlpReceiver) trace(traceID string) map[string]*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]*tracepb.Span{}
	for _, s := range o.spans {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			out[s.GetName()] = s
		}
	}
	return out
}

func newOTLPReceiver() *otlpReceiver { return &otlpReceiver{service: map[string]bool{}} }

// tracingEnv points the OTLP exporter at endpoint, with every other OTEL_*
// variable a developer's shell might set cleared.
func tracingEnv(t *testing.T, endpoint, protocol string) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
}

func spanID(b []byte) string { return hex.EncodeToString(b) }

// TestTracing: with an OTLP endpoint configured, one HTTP call is one
// trace (HTTP server span → gateway client span → gRPC server span →
// upstream client span) continuing the caller's traceparent, the upstream
// request carries the upstream span's traceparent, and the request id is
// the trace id. Not parallel: the exporter reads the process environment.
func TestTracing(t *testing.T) {
	recv := newOTLPReceiver()
	collector := httptest.NewServer(recv)
	defer collector.Close()
	tracingEnv(t, collector.URL, "http/protobuf")

	_, up := newEmulator(t, "up-secret")
	rec := &headerRecorder{up: up}
	s := startServer(t, up.URL, gatetest.Held("up-secret"))

	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	h := s.httpCaller("")
	h.header = http.Header{"Traceparent": {"00-" + callerTrace + "-" + callerSpan + "-01"}}
	resp, b := h.do(t, http.MethodPost, tokensPath("trace-user"), bodyJSON(t, &tokenv1.CreateRequest{Name: "n"}))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP create: %d %s", resp.StatusCode, b)
	}
	if id := resp.Header.Get("X-Request-Id"); id != callerTrace {
		t.Errorf("request id %q, want the trace id %s", id, callerTrace)
	}
	httpUp := rec.last(t)

	var hdr metadata.MD
	if _, err := tokenv1.NewTokenServiceClient(s.Dial(nil)).Create(callCtx(t), &tokenv1.CreateRequest{UserId: "trace-user"}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	grpcTrace := hdr.Get("x-request-id")[0]
	grpcUp := rec.last(t)

	if err := s.Stop(30 * time.Second); err != nil { // flushes the spans
		t.Fatal(err)
	}

	if !recv.service["cbkgate"] {
		t.Errorf("service names %v, want cbkgate", recv.service)
	}
	spans := recv.trace(callerTrace)
	const method = "cbkgate.token.v1.TokenService/Create"
	httpSpan, upSpan := spans["POST /v1/users/{user_id}/tokens"], spans["chatbotkit create"]
	var gwSpan, grpcSpan *tracepb.Span
	for _, sp := range recv.spans {
		if hex.EncodeToString(sp.GetTraceId()) != callerTrace || sp.GetName() != method {
			continue
		}
		switch sp.GetKind() {
		case tracepb.Span_SPAN_KIND_CLIENT:
			gwSpan = sp
		case tracepb.Span_SPAN_KIND_SERVER:
			grpcSpan = sp
		}
	}
	if httpSpan == nil || gwSpan == nil || grpcSpan == nil || upSpan == nil {
		t.Fatalf("trace %s has spans %v, want the HTTP, gateway, gRPC and upstream spans", callerTrace, names(spans))
	}
	for _, link := range []struct {
		what          string
		child, parent string
	}{
		{"HTTP span's parent is the caller's span", spanID(httpSpan.GetParentSpanId()), callerSpan},
		{"gateway client span's parent is the HTTP span", spanID(gwSpan.GetParentSpanId()), spanID(httpSpan.GetSpanId())},
		{"gRPC server span's parent is the gateway client span", spanID(grpcSpan.GetParentSpanId()), spanID(gwSpan.GetSpanId())},
		{"upstream span's parent is the gRPC server span", spanID(upSpan.GetParentSpanId()), spanID(grpcSpan.GetSpanId())},
	} {
		if link.child != link.parent {
			t.Errorf("%s: got %s, want %s", link.what, link.child, link.parent)
		}
	}
	if httpSpan.GetKind() != tracepb.Span_SPAN_KIND_SERVER || upSpan.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("span kinds: HTTP %v, upstream %v", httpSpan.GetKind(), upSpan.GetKind())
	}
	if want := "00-" + callerTrace + "-" + spanID(upSpan.GetSpanId()) + "-01"; httpUp.Get("Traceparent") != want {
		t.Errorf("upstream traceparent %q, want the upstream span's %q", httpUp.Get("Traceparent"), want)
	}
	if httpUp.Get("X-Request-Id") != callerTrace {
		t.Errorf("upstream X-Request-Id %q, want %s", httpUp.Get("X-Request-Id"), callerTrace)
	}

	// A direct gRPC call: its own trace, whose id is its request id.
	g := recv.trace(grpcTrace)
	if len(g) != 2 || g[method] == nil || g["chatbotkit create"] == nil {
		t.Fatalf("trace %s of the gRPC call has spans %v, want the gRPC server and upstream spans", grpcTrace, names(g))
	}
	if got := grpcUp.Get("Traceparent"); !strings.HasPrefix(got, "00-"+grpcTrace+"-"+spanID(g["chatbotkit create"].GetSpanId())) {
		t.Errorf("upstream traceparent %q, want one of trace %s and the upstream span", got, grpcTrace)
	}
	for _, sp := range recv.spans {
		if strings.Contains(sp.GetName(), "trace-user") {
			t.Errorf("span name %q holds a user id", sp.GetName())
		}
	}
}

func names(m map[string]*tracepb.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTracingOverOTLPGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports to an
// OTLP/gRPC collector.
func TestTracingOverOTLPGRPC(t *testing.T) {
	recv := newOTLPReceiver()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, recv)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	tracingEnv(t, "http://"+lis.Addr().String(), "grpc")

	_, up := newEmulator(t, "up-secret")
	s := startServer(t, up.URL, gatetest.Held("up-secret"))
	var hdr metadata.MD
	if _, err := tokenv1.NewTokenServiceClient(s.Dial(nil)).Create(callCtx(t), &tokenv1.CreateRequest{UserId: "u"}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := recv.trace(hdr.Get("x-request-id")[0]); len(got) != 2 {
		t.Errorf("spans of the call: %v, want the gRPC server and upstream spans", names(got))
	}
}

// TestTracingDisabled: OTEL_SDK_DISABLED=true wins over an endpoint:
// nothing is exported, and the caller's traceparent still goes upstream,
// unchanged.
func TestTracingDisabled(t *testing.T) {
	recv := newOTLPReceiver()
	collector := httptest.NewServer(recv)
	defer collector.Close()
	tracingEnv(t, collector.URL, "http/protobuf")
	t.Setenv("OTEL_SDK_DISABLED", "true")

	_, up := newEmulator(t, "up-secret")
	rec := &headerRecorder{up: up}
	s := startServer(t, up.URL, gatetest.Held("up-secret"))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := metadata.AppendToOutgoingContext(callCtx(t), "traceparent", parent)
	if _, err := tokenv1.NewTokenServiceClient(s.Dial(nil)).Create(ctx, &tokenv1.CreateRequest{UserId: "u"}); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t).Values("Traceparent"); len(got) != 1 || got[0] != parent {
		t.Errorf("upstream traceparent %q with tracing off, want the caller's %q", got, parent)
	}
	if err := s.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if recv.exports != 0 {
		t.Errorf("%d exports with OTEL_SDK_DISABLED=true", recv.exports)
	}
}
