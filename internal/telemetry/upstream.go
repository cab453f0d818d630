package telemetry

import (
	"context"
	"net/http"
	"path"

	"go.opentelemetry.io/otel/propagation"

	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// UpstreamTransport wraps the REST client's transport: with tracing on,
// every attempt is a client span of its own, whose traceparent it sends.
// base keeps the connection pool, and CloseIdleConnections reaches it.
func UpstreamTransport(t *Tracing, base *http.Transport) http.RoundTripper {
	if !t.Enabled() {
		return base
	}
	return &upstreamTransport{next: t.clientTransport(base), base: base}
}

type upstreamTransport struct {
	next http.RoundTripper
	base *http.Transport
}

func (u *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return u.next.RoundTrip(r)
}

func (u *upstreamTransport) CloseIdleConnections() { u.base.CloseIdleConnections() }

// UpstreamHeaders is the REST client's request hook: every attempt carries
// the call's X-Request-Id and, with tracing off, the call's W3C traceparent
// (on, the client span's is set by the transport).
func (t *Tracing) UpstreamHeaders(ctx context.Context, h http.Header) {
	if id := RequestID(ctx); id != "" {
		h[RequestIDHeader] = []string{id}
	}
	t.injectOff(ctx, propagation.HeaderCarrier(h))
}

// UpstreamAttempts is the REST client's per-attempt hook: each attempt is
// counted by operation and status ("error" when no answer came) and timed;
// a retry also counts in cbkgate_upstream_retries_total.
func (m *Metrics) UpstreamAttempts() func(chatbotkit.Attempt) {
	if m == nil {
		return nil
	}
	return func(a chatbotkit.Attempt) {
		s := m.upstreamSeries(a.Operation, max(a.Status, 0))
		s.requests.Inc()
		s.duration.Observe(a.Duration.Seconds())
		if a.Retry {
			s.retries.Inc()
		}
	}
}

// upstreamOperation names an upstream request by the last segment of its
// path (.../token/list, .../token/{id}/update): list, create, update,
// delete. Ids never make it into a span name.
func upstreamOperation(p string) string {
	switch op := path.Base(p); op {
	case "list", "create", "update", "delete":
		return op
	}
	return "other"
}
