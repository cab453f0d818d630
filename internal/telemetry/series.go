package telemetry

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The series a call records are looked up here rather than with
// WithLabelValues on every call: a vector hashes and validates each label
// value on each lookup, and a gRPC Create records three such series, a
// gateway Create five, which profiles showed at ~2% of a call's CPU. The
// keys come from the short fixed label sets of Metrics (route patterns,
// standard methods, operations, status codes), so the caches stay small.

// httpKey names an HTTP request's series.
type httpKey struct {
	method, route string
	code          int
}

type httpSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// upstreamKey names an upstream attempt's series; status 0: no answer.
type upstreamKey struct {
	operation string
	status    int
}

type upstreamSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
	retries  prometheus.Counter
}

// seriesCache holds the series of a Metrics by their label values.
type seriesCache struct {
	http     sync.Map // httpKey → *httpSeries
	upstream sync.Map // upstreamKey → *upstreamSeries
}

func (m *Metrics) httpSeries(method, route string, code int) *httpSeries {
	k := httpKey{method, route, code}
	if s, ok := m.series.http.Load(k); ok {
		return s.(*httpSeries)
	}
	s, _ := m.series.http.LoadOrStore(k, &httpSeries{
		requests: m.httpRequests.WithLabelValues(method, route, strconv.Itoa(code)),
		duration: m.httpDuration.WithLabelValues(method, route),
	})
	return s.(*httpSeries)
}

func (m *Metrics) upstreamSeries(operation string, status int) *upstreamSeries {
	k := upstreamKey{operation, status}
	if s, ok := m.series.upstream.Load(k); ok {
		return s.(*upstreamSeries)
	}
	code := "error"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	s, _ := m.series.upstream.LoadOrStore(k, &upstreamSeries{
		requests: m.upstreamRequests.WithLabelValues(operation, code),
		duration: m.upstreamDuration.WithLabelValues(operation),
		retries:  m.upstreamRetries.WithLabelValues(operation),
	})
	return s.(*upstreamSeries)
}
