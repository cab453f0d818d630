package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/go-logr/logr"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"

	"github.com/cbkgate/cbkgate/internal/version"
)

// serviceName is the OpenTelemetry service.name unless OTEL_SERVICE_NAME
// (or service.name in OTEL_RESOURCE_ATTRIBUTES) says otherwise.
const serviceName = "cbkgate"

// Tracing is cbkgate's OpenTelemetry tracing: on when an OTLP endpoint is
// configured, off (and then free: no spans, no instrumentation installed)
// otherwise.
//
// With tracing off cbkgate does not take part in the trace: it passes a
// caller's valid traceparent (and tracestate) on to ChatBotKit unchanged,
// and a call that came without one sends none. Making one up would cost
// every call a trace context that nothing records.
type Tracing struct {
	sdk        *sdktrace.TracerProvider // nil when off
	propagator propagation.TextMapPropagator
}

// traceContext is the propagator used when tracing is off: only the W3C
// trace context is carried, nothing is recorded.
var traceContext = propagation.TraceContext{}

// NewTracing configures tracing from the standard OTEL_* environment
// variables: on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED=true
// or OTEL_TRACES_EXPORTER=none; the exporter speaks OTLP over HTTP
// (http/protobuf, the default) or gRPC (OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL
// =grpc), and reads its endpoint, headers, timeout and TLS settings from
// the same variables. Sampling follows OTEL_TRACES_SAMPLER (default:
// parent-based, always on), batching OTEL_BSP_*.
//
// The SDK's own complaints (a collector that cannot be reached, spans
// dropped) go to log, in its format, at warn.
func NewTracing(ctx context.Context, log *slog.Logger) (*Tracing, error) {
	t := &Tracing{propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	if !tracingWanted(os.Getenv) {
		return t, nil
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "err", err)
	}))
	otel.SetLogger(logr.FromSlogHandler(log.Handler()))
	var exp sdktrace.SpanExporter
	var err error
	switch p := otlpProtocol(os.Getenv); p {
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported: use http/protobuf or grpc", p)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	// Later detectors win: the environment can rename the service.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", serviceName),
			attribute.String("service.version", version.Version()),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	t.sdk = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return t, nil
}

func tracingWanted(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

func otlpProtocol(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// Shutdown flushes the spans not yet exported, within ctx.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

func (t *Tracing) grpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.sdk),
		otelgrpc.WithPropagators(t.propagator),
		// cbkgate's metrics are Prometheus's; no second set.
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
	}
}

// serverHandler is the gRPC server's stats handler (a server span per
// call), or nil when tracing is off.
func (t *Tracing) serverHandler() stats.Handler {
	if !t.Enabled() {
		return nil
	}
	return otelgrpc.NewServerHandler(t.grpcOptions()...)
}

// ClientHandler is the stats handler of the gateway's own connection to the
// gRPC server (a client span per call, and the traceparent that makes the
// server span its child), or nil when tracing is off.
func (t *Tracing) ClientHandler() stats.Handler {
	if !t.Enabled() {
		return nil
	}
	return otelgrpc.NewClientHandler(t.grpcOptions()...)
}

// httpHandler wraps the HTTP listener's handler with a server span per
// request, named by method and route pattern (never a raw path). Off, it
// returns h.
func (t *Tracing) httpHandler(h http.Handler) http.Handler {
	if !t.Enabled() {
		return h
	}
	return otelhttp.NewHandler(h, "http",
		otelhttp.WithTracerProvider(t.sdk),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + routeOf(r)
		}),
	)
}

// clientTransport wraps the upstream transport with a client span per
// attempt, which also injects its traceparent. Off, it returns rt.
func (t *Tracing) clientTransport(rt http.RoundTripper) http.RoundTripper {
	if !t.Enabled() {
		return rt
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.sdk),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return "chatbotkit " + upstreamOperation(r.URL.Path)
		}),
	)
}

// withTraceContext gives a call the caller's trace context when tracing is
// off and it sent a valid one (carrier), so that it can be passed on
// upstream unchanged. A call without one has none: cbkgate makes up no
// trace that nothing records. With tracing on the instrumentation has
// already put the server span in ctx, and ctx is returned as it is.
func (t *Tracing) withTraceContext(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if t.Enabled() || trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return traceContext.Extract(ctx, carrier)
}

// injectOn writes the current span's trace context into carrier when
// tracing is on (off, there is no span of cbkgate's to continue).
func (t *Tracing) injectOn(ctx context.Context, carrier propagation.TextMapCarrier) {
	if t.Enabled() {
		t.propagator.Inject(ctx, carrier)
	}
}

// injectOff writes the caller's trace context, if it sent one, into an
// outgoing carrier when tracing is off (on, the instrumentation writes its
// client span's).
func (t *Tracing) injectOff(ctx context.Context, carrier propagation.TextMapCarrier) {
	if !t.Enabled() {
		traceContext.Inject(ctx, carrier)
	}
}
