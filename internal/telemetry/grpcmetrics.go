package telemetry

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcServerMetrics are the gRPC server metrics the contract names, in the
// conventions of go-grpc-middleware's Prometheus provider: its families,
// help texts, labels, buckets and counting rules, which
// TestGRPCMetricsMatchProvider holds them to, call for call.
//
// cbkgate records them itself, rather than with the provider's
// interceptors, because those resolve each series by hashing and checking
// its label values on every call and every streamed message: measured
// with cmd/bench, 5% of a Create's CPU, half of what the observability
// issue allows all of telemetry. Here a method's series are resolved once,
// when the server's methods are known (initialize), and a call costs a few
// atomic adds.
type grpcServerMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec

	methods sync.Map // full method name → *methodSeries
}

// The values of grpc_type, as the provider names them.
const (
	grpcUnary        = "unary"
	grpcClientStream = "client_stream"
	grpcServerStream = "server_stream"
	grpcBidiStream   = "bidi_stream"
)

// numCodes is how many gRPC codes there are (OK to Unauthenticated).
const numCodes = int(codes.Unauthenticated) + 1

// methodSeries are one method's series.
type methodSeries struct {
	typ, service, method    string
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
	handled                 [numCodes]prometheus.Counter
}

func newGRPCServerMetrics() *grpcServerMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &grpcServerMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets,
		}, labels),
	}
}

func (g *grpcServerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{g.started, g.handled, g.received, g.sent, g.handling}
}

// initialize creates the series of every method of srv at 0 (each code of
// grpc_server_handled_total included), as the provider's InitializeMetrics
// does.
func (g *grpcServerMetrics) initialize(srv *grpc.Server) {
	for service, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			g.series("/"+service+"/"+m.Name, methodType(m.IsClientStream, m.IsServerStream))
		}
	}
}

func methodType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return grpcBidiStream
	case clientStream:
		return grpcClientStream
	case serverStream:
		return grpcServerStream
	}
	return grpcUnary
}

// series returns a method's series, made on its first call when initialize
// did not know the method. Only registered methods reach the interceptors,
// so the map holds at most one entry per method.
func (g *grpcServerMetrics) series(fullMethod, typ string) *methodSeries {
	if s, ok := g.methods.Load(fullMethod); ok {
		return s.(*methodSeries)
	}
	service, method := splitFullMethod(fullMethod)
	s := &methodSeries{
		typ: typ, service: service, method: method,
		started:  g.started.WithLabelValues(typ, service, method),
		received: g.received.WithLabelValues(typ, service, method),
		sent:     g.sent.WithLabelValues(typ, service, method),
		handling: g.handling.WithLabelValues(typ, service, method),
	}
	for c := range s.handled {
		s.handled[c] = g.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	actual, _ := g.methods.LoadOrStore(fullMethod, s)
	return actual.(*methodSeries)
}

// splitFullMethod splits "/package.Service/Method", as the provider does.
func splitFullMethod(fullMethod string) (service, method string) {
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return "unknown", "unknown"
	}
	return service, method
}

// done records a call's end: its code (as the provider reads it: a
// context error counts as Canceled or DeadlineExceeded) and how long it
// took.
func (g *grpcServerMetrics) done(s *methodSeries, err error, start time.Time) {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	c := st.Code()
	if int(c) < numCodes {
		s.handled[c].Inc()
	} else {
		g.handled.WithLabelValues(s.typ, s.service, s.method, c.String()).Inc()
	}
	s.handling.Observe(time.Since(start).Seconds())
}
