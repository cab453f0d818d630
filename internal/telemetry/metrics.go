package telemetry

import (
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/cbkgate/cbkgate/internal/version"
)

// Metrics is cbkgate's Prometheus registry and every metric in it, with
// the names and labels of the contract. No label ever holds an id, a
// cursor, a key, a secret or a caller: every label value comes from a
// short fixed set (route patterns, operations, codes, reasons).
//
// A nil *Metrics is valid and records nothing (metrics off: --admin-addr
// empty), so hooks can be wired unconditionally.
type Metrics struct {
	reg  *prometheus.Registry
	grpc *grpcServerMetrics

	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	upstreamRetries  *prometheus.CounterVec
	listTokensSent   prometheus.Counter
	listMetaOmitted  prometheus.Counter
	rateLimited      prometheus.Counter
	authFailures     *prometheus.CounterVec
	permissionDenied *prometheus.CounterVec
	configReloads    *prometheus.CounterVec
	idemReplays      prometheus.Counter
	stateErrors      *prometheus.CounterVec

	series seriesCache
}

// Upstream operations, the values of the operation label.
var upstreamOperations = []string{"list", "create", "update", "delete"}

// Auth failure reasons cbkgate itself gives (apierr); any other reason is
// counted as "OTHER" so that the label stays a short fixed set.
var authFailureReasons = []string{"MISSING_CREDENTIALS", "INVALID_CREDENTIALS"}

// NewMetrics builds the registry: gRPC server metrics (those of
// go-grpc-middleware's Prometheus provider, handling-time histogram on;
// see grpcServerMetrics), HTTP, upstream, the
// cbkgate counters, build info, and the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		grpc: newGRPCServerMetrics(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cbkgate_http_requests_total",
			Help: "HTTP requests answered on the HTTP listener, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cbkgate_http_request_duration_seconds",
			Help:    "Time from an HTTP request's arrival to the end of its answer, by method and route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cbkgate_upstream_requests_total",
			Help: "Requests sent to ChatBotKit, one per attempt, by operation and HTTP status (\"error\": no answer came).",
		}, []string{"operation", "code"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cbkgate_upstream_request_duration_seconds",
			Help:    "Time from sending an upstream request to its status line (or its failure), per attempt, by operation.",
			Buckets: prometheus.DefBuckets,
		}, []string{"operation"}),
		upstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cbkgate_upstream_retries_total",
			Help: "Upstream attempts that were retries of an earlier attempt of the same request, by operation.",
		}, []string{"operation"}),
		listTokensSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cbkgate_list_tokens_sent_total",
			Help: "Tokens sent to callers by List, over every transport.",
		}),
		listMetaOmitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cbkgate_list_meta_omitted_total",
			Help: "Tokens List sent without their meta (meta_omitted set), because ChatBotKit stored it nested deeper than 32 levels.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cbkgate_rate_limited_total",
			Help: "Calls refused with RESOURCE_EXHAUSTED (RATE_LIMITED) by the per-caller rate limit.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cbkgate_auth_failures_total",
			Help: "Calls cbkgate refused as UNAUTHENTICATED, by reason (the ErrorInfo reason).",
		}, []string{"reason"}),
		permissionDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cbkgate_permission_denied_total",
			Help: "Authenticated calls cbkgate refused as PERMISSION_DENIED because no grant (--grants-file) allows them, by method (list, create, update, delete).",
		}, []string{"method"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cbkgate_config_reloads_total",
			Help: "Reloads of the key file, secret file, TLS files and grants file, by result (success, failure).",
		}, []string{"result"}),
		idemReplays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cbkgate_idempotent_replays_total",
			Help: "Creates with a request_id answered from the record of an earlier call, without an upstream create.",
		}),
		stateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cbkgate_state_errors_total",
			Help: "Failures of the shared state store (--state), by op: rate (the caller rate fell back to this replica's own) or record (request_id records).",
		}, []string{"op"}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cbkgate_build_info",
		Help: "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{
			"version":   version.Version(),
			"revision":  version.Revision(),
			"goversion": runtime.Version(),
		},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(m.grpc.collectors()...)
	m.reg.MustRegister(
		m.httpRequests, m.httpDuration,
		m.upstreamRequests, m.upstreamDuration, m.upstreamRetries,
		m.listTokensSent, m.listMetaOmitted, m.rateLimited, m.authFailures, m.permissionDenied, m.configReloads,
		m.idemReplays, m.stateErrors,
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Series that alerts divide by or compare against exist from the start
	// at 0, rather than appearing with the first event.
	for _, op := range upstreamOperations {
		m.upstreamRetries.WithLabelValues(op)
	}
	for _, r := range authFailureReasons {
		m.authFailures.WithLabelValues(r)
	}
	for _, op := range upstreamOperations {
		m.permissionDenied.WithLabelValues(op)
	}
	m.configReloads.WithLabelValues("success")
	m.configReloads.WithLabelValues("failure")
	m.stateErrors.WithLabelValues("rate")
	m.stateErrors.WithLabelValues("record")
	return m
}

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: nil})
}

// InitializeGRPC creates the gRPC series of every method of srv at 0.
func (m *Metrics) InitializeGRPC(srv *grpc.Server) {
	if m != nil {
		m.grpc.initialize(srv)
	}
}

// AuthFailure counts one call refused as UNAUTHENTICATED, with the
// ErrorInfo reason cbkgate gave.
func (m *Metrics) AuthFailure(reason string) {
	if m == nil {
		return
	}
	if !knownReason(reason) {
		reason = "OTHER"
	}
	m.authFailures.WithLabelValues(reason).Inc()
}

func knownReason(r string) bool {
	for _, k := range authFailureReasons {
		if r == k {
			return true
		}
	}
	return false
}

// ConfigReload counts one reload of the files cbkgate re-reads on SIGHUP
// or on a change on disk; err is the reload's outcome.
func (m *Metrics) ConfigReload(err error) {
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.configReloads.WithLabelValues(result).Inc()
}

// ListMetaOmitted counts one token List sent with its meta left out.
func (m *Metrics) ListMetaOmitted() {
	if m != nil {
		m.listMetaOmitted.Inc()
	}
}

// IdempotentReplay counts one Create answered from its record.
func (m *Metrics) IdempotentReplay() {
	if m != nil {
		m.idemReplays.Inc()
	}
}

// StateError counts one failure of the state store; op is "rate" or
// "record".
func (m *Metrics) StateError(op string) {
	if m == nil {
		return
	}
	if op != "rate" {
		op = "record"
	}
	m.stateErrors.WithLabelValues(op).Inc()
}

// observeHTTP records one answered HTTP request.
func (m *Metrics) observeHTTP(method, route string, status int, seconds float64) {
	s := m.httpSeries(methodLabel(method), route, status)
	s.requests.Inc()
	s.duration.Observe(seconds)
}

// methodLabel keeps the method label to the standard methods: a client can
// send any token as a method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
