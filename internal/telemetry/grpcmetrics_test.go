package telemetry

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// TestGRPCMetricsMatchProvider: cbkgate's gRPC server metrics are those of
// go-grpc-middleware's Prometheus provider (the contract's convention):
// after the same calls (unary OK and NotFound, a server stream cancelled
// by its client, a bidi stream), a server with the provider's interceptors
// and one with cbkgate's expose the same families, help, types, label sets
// and values (histograms: their sample counts; durations differ).
func TestGRPCMetricsMatchProvider(t *testing.T) {
	provider := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	providerReg := prometheus.NewRegistry()
	providerReg.MustRegister(provider)
	providerSrv := serveHealth(t, grpc.ChainUnaryInterceptor(provider.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(provider.StreamServerInterceptor()))
	provider.InitializeMetrics(providerSrv.srv)

	m := NewMetrics()
	tel := GRPC{Metrics: m}
	oursSrv := serveHealth(t, grpc.ChainUnaryInterceptor(tel.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(tel.StreamInterceptor()))
	m.InitializeGRPC(oursSrv.srv)

	for _, s := range []*healthServer{providerSrv, oursSrv} {
		s.calls(t)
	}
	var want, got string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// The cancelled Watch ends on the server a moment after the
		// client gave up on it.
		want, got = grpcSeries(t, providerReg), grpcSeries(t, m.reg)
		if want == got && strings.Contains(got, `grpc_code="Canceled",grpc_method="Watch"`) {
			return
		}
	}
	t.Errorf("gRPC server metrics differ from the provider's.\nprovider:\n%s\ncbkgate:\n%s", want, got)
}

type healthServer struct {
	srv  *grpc.Server
	conn *grpc.ClientConn
}

// serveHealth serves the health and reflection services on loopback with
// the given interceptors.
func serveHealth(t *testing.T, opts ...grpc.ServerOption) *healthServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &healthServer{srv: srv, conn: conn}
}

// calls makes the same calls on each server: Check OK and NotFound, a
// Watch the client cancels after its first message, and a reflection
// stream with one request.
func (s *healthServer) calls(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(s.conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); err == nil {
		t.Fatal("Check of an unknown service succeeded")
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	w, err := hc.Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	stopWatch()

	r, err := reflectionpb.NewServerReflectionClient(s.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := r.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(); err == nil {
		t.Fatal("the reflection stream went on after CloseSend")
	}
}

// grpcSeries renders the grpc_server_* families of reg, one line per
// series, sorted: name, type and help, labels, and the value (a
// histogram's sample count).
func grpcSeries(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "grpc_server_") {
			continue
		}
		lines = append(lines, fmt.Sprintf("# %s %s %s", f.GetName(), f.GetType(), f.GetHelp()))
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				v = float64(m.GetHistogram().GetSampleCount())
				labels = append(labels, fmt.Sprintf("buckets=%d", len(m.GetHistogram().GetBucket())))
			}
			lines = append(lines, fmt.Sprintf("%s{%s} %g", f.GetName(), strings.Join(labels, ","), v))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
