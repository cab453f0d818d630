package telemetry

import (
	"net/http"
	"path"
	"strconv"

	"go.opentelemetry.io/otel/propagation"

	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// UpstreamTransport wraps the REST client's transport: every attempt
// carries the call's X-Request-Id and a W3C traceparent, and with tracing
// on is a client span of its own. base keeps the connection pool, and
// CloseIdleConnections reaches it.
func UpstreamTransport(t *Tracing, base *http.Transport) http.RoundTripper {
	return &upstreamTransport{next: t.clientTransport(base), base: base, tracing: t}
}

type upstreamTransport struct {
	next    http.RoundTripper
	base    *http.Transport
	tracing *Tracing
}

func (u *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the caller's request: headers are
	// set on a copy.
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = r.Header.Clone()
	if id := RequestID(r.Context()); id != "" {
		r2.Header.Set(RequestIDHeader, id)
	}
	u.tracing.injectOff(r.Context(), propagation.HeaderCarrier(r2.Header))
	return u.next.RoundTrip(r2)
}

func (u *upstreamTransport) CloseIdleConnections() { u.base.CloseIdleConnections() }

// UpstreamAttempts is the REST client's per-attempt hook: each attempt is
// counted by operation and status ("error" when no answer came) and timed;
// a retry also counts in cbkgate_upstream_retries_total.
func (m *Metrics) UpstreamAttempts() func(chatbotkit.Attempt) {
	if m == nil {
		return nil
	}
	return func(a chatbotkit.Attempt) {
		code := "error"
		if a.Status > 0 {
			code = strconv.Itoa(a.Status)
		}
		m.upstreamRequests.WithLabelValues(a.Operation, code).Inc()
		m.upstreamDuration.WithLabelValues(a.Operation).Observe(a.Duration.Seconds())
		if a.Retry {
			m.upstreamRetries.WithLabelValues(a.Operation).Inc()
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
