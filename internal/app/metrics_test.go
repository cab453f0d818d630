package app_test

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/version"
)

// scrape GETs /metrics over loopback and returns every sample as
// "name{label="value",...}" (labels sorted) → value; a histogram gives its
// _count.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: HTTP %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: not the Prometheus text format: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key, v := name, 0.0
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				key, v = name+"_count", float64(m.GetHistogram().GetSampleCount())
			default:
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			out[key+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

// nonZero returns the samples of the named metrics that are not 0.
func nonZero(all map[string]float64, names ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range all {
		name, _, _ := strings.Cut(k, "{")
		if v != 0 && slices.Contains(names, name) {
			out[k] = v
		}
	}
	return out
}

func compareSamples(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if got[k] != want[k] {
			t.Errorf("%s: %s = %v, want %v", what, k, got[k], want[k])
		}
	}
}

// TestMetrics drives known calls over both transports and checks the
// scrape of /metrics on the admin listener, value for value.
func TestMetrics(t *testing.T) {
	t.Parallel()
	held := unique("cbk-held-SECRET")
	key := unique("cbkgate-key-SECRET")
	_, up := newEmulator(t, held)
	up.Script(fu.List, fu.Error(http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "busy")) // the first list, then the emulator
	s := startServer(t, up.URL, gatetest.Held(held), gatetest.Args("--api-keys-file="+writeKeys(t, key)))
	user := unique("metrics-user")

	g, h := s.grpcCaller(bearer(key)), s.httpCaller(bearer(key))
	if _, st := g.create(t, &tokenv1.CreateRequest{UserId: user}); st != nil {
		t.Fatalf("gRPC create: %v", st.Err())
	}
	if _, st := h.create(t, &tokenv1.CreateRequest{UserId: user}); st != nil {
		t.Fatalf("HTTP create: %v", st.Err())
	}
	// The first upstream list attempt gets 503 and is retried.
	if got, st := g.list(t, &tokenv1.ListRequest{UserId: user, Limit: 2}); st != nil || len(got) != 2 {
		t.Fatalf("gRPC list: %d tokens, %v", len(got), st.Err())
	}
	if got, st := h.list(t, &tokenv1.ListRequest{UserId: user, Limit: 1}); st != nil || len(got) != 1 {
		t.Fatalf("HTTP list: %d tokens, %v", len(got), st.Err())
	}
	_, st := s.grpcCaller(bearer("wrong-"+key)).create(t, &tokenv1.CreateRequest{UserId: user})
	wantCode(t, "gRPC create, wrong key", st, codes.Unauthenticated)
	_, st = s.grpcCaller("").create(t, &tokenv1.CreateRequest{UserId: user})
	wantCode(t, "gRPC create, no key", st, codes.Unauthenticated)
	_, st = s.httpCaller(bearer("wrong-"+key)).create(t, &tokenv1.CreateRequest{UserId: user})
	wantCode(t, "HTTP create, wrong key", st, codes.Unauthenticated)
	_, st = g.delete(t, &tokenv1.DeleteRequest{UserId: user, TokenId: "tok_nope"})
	wantCode(t, "gRPC delete of an unknown token", st, codes.NotFound)
	for _, p := range []string{"/nope", "/metrics"} {
		// Metrics are never on the public port.
		if resp, _ := h.do(t, http.MethodGet, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the HTTP listener: %d, want 404", p, resp.StatusCode)
		}
	}

	all := scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics")
	const svc = `grpc_service="cbkgate.token.v1.TokenService"`
	grpcKey := func(name, method, typ, code string) string {
		k := name + `{` + `grpc_code="` + code + `",grpc_method="` + method + `",` + svc + `,grpc_type="` + typ + `"}`
		if code == "" {
			k = name + `{grpc_method="` + method + `",` + svc + `,grpc_type="` + typ + `"}`
		}
		return k
	}
	compareSamples(t, "grpc_server_handled_total", nonZero(all, "grpc_server_handled_total"), map[string]float64{
		grpcKey("grpc_server_handled_total", "Create", "unary", "OK"):              2, // direct and through the gateway
		grpcKey("grpc_server_handled_total", "Create", "unary", "Unauthenticated"): 2, // the HTTP refusal never reached gRPC
		grpcKey("grpc_server_handled_total", "List", "server_stream", "OK"):        2,
		grpcKey("grpc_server_handled_total", "Delete", "unary", "NotFound"):        1,
	})
	compareSamples(t, "grpc started, messages, handling time", nonZero(all,
		"grpc_server_started_total", "grpc_server_msg_sent_total", "grpc_server_msg_received_total", "grpc_server_handling_seconds_count"),
		map[string]float64{
			grpcKey("grpc_server_started_total", "Create", "unary", ""):                4,
			grpcKey("grpc_server_started_total", "List", "server_stream", ""):          2,
			grpcKey("grpc_server_started_total", "Delete", "unary", ""):                1,
			grpcKey("grpc_server_msg_received_total", "Create", "unary", ""):           4,
			grpcKey("grpc_server_msg_received_total", "List", "server_stream", ""):     2,
			grpcKey("grpc_server_msg_received_total", "Delete", "unary", ""):           1,
			grpcKey("grpc_server_msg_sent_total", "Create", "unary", ""):               2,
			grpcKey("grpc_server_msg_sent_total", "List", "server_stream", ""):         3,
			grpcKey("grpc_server_handling_seconds_count", "Create", "unary", ""):       4,
			grpcKey("grpc_server_handling_seconds_count", "List", "server_stream", ""): 2,
			grpcKey("grpc_server_handling_seconds_count", "Delete", "unary", ""):       1,
		})
	httpSamples := nonZero(all, "cbkgate_http_requests_total", "cbkgate_http_request_duration_seconds_count")
	for k := range httpSamples {
		if strings.Contains(k, `route="/readyz"`) {
			delete(httpSamples, k) // the harness's readiness polls
		}
	}
	compareSamples(t, "HTTP", httpSamples, map[string]float64{
		`cbkgate_http_requests_total{code="200",method="POST",route="/v1/users/{user_id}/tokens"}`:      1,
		`cbkgate_http_requests_total{code="401",method="POST",route="/v1/users/{user_id}/tokens"}`:      1,
		`cbkgate_http_requests_total{code="200",method="GET",route="/v1/users/{user_id}/tokens"}`:       1,
		`cbkgate_http_requests_total{code="404",method="GET",route="other"}`:                            2,
		`cbkgate_http_request_duration_seconds_count{method="POST",route="/v1/users/{user_id}/tokens"}`: 2,
		`cbkgate_http_request_duration_seconds_count{method="GET",route="/v1/users/{user_id}/tokens"}`:  1,
		`cbkgate_http_request_duration_seconds_count{method="GET",route="other"}`:                       2,
	})
	compareSamples(t, "upstream and cbkgate counters", nonZero(all,
		"cbkgate_upstream_requests_total", "cbkgate_upstream_request_duration_seconds_count", "cbkgate_upstream_retries_total",
		"cbkgate_list_tokens_sent_total", "cbkgate_auth_failures_total", "cbkgate_rate_limited_total", "cbkgate_config_reloads_total"),
		map[string]float64{
			`cbkgate_upstream_requests_total{code="200",operation="create"}`:      2,
			`cbkgate_upstream_requests_total{code="503",operation="list"}`:        1,
			`cbkgate_upstream_requests_total{code="200",operation="list"}`:        2,
			`cbkgate_upstream_requests_total{code="404",operation="delete"}`:      1,
			`cbkgate_upstream_request_duration_seconds_count{operation="create"}`: 2,
			`cbkgate_upstream_request_duration_seconds_count{operation="list"}`:   3,
			`cbkgate_upstream_request_duration_seconds_count{operation="delete"}`: 1,
			`cbkgate_upstream_retries_total{operation="list"}`:                    1,
			`cbkgate_list_tokens_sent_total{}`:                                    3,
			`cbkgate_auth_failures_total{reason="INVALID_CREDENTIALS"}`:           2,
			`cbkgate_auth_failures_total{reason="MISSING_CREDENTIALS"}`:           1,
		})
	// Series that exist at 0 from the start, for alerts to use.
	for _, k := range []string{
		`cbkgate_rate_limited_total{}`,
		`cbkgate_config_reloads_total{result="failure"}`,
		`cbkgate_config_reloads_total{result="success"}`,
		`cbkgate_upstream_retries_total{operation="create"}`,
		grpcKey("grpc_server_handled_total", "Update", "unary", "Unavailable"),
	} {
		if v, ok := all[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", k, v, ok)
		}
	}
	build := fmt.Sprintf(`cbkgate_build_info{goversion=%q,revision=%q,version=%q}`, runtime.Version(), version.Revision(), version.Version())
	if all[build] != 1 {
		t.Errorf("%s = %v, want 1", build, all[build])
	}
	for _, k := range []string{"go_goroutines{}", "process_resident_memory_bytes{}"} {
		if _, ok := all[k]; !ok {
			t.Errorf("%s missing: the Go and process collectors must be registered", k)
		}
	}
	// No label value names a user, a token, a key or a secret.
	for k := range all {
		for _, v := range []string{user, key, held, "tok_"} {
			if strings.Contains(k, v) {
				t.Errorf("metric %s holds %q", k, v)
			}
		}
	}
}

// TestMetricsRateLimited: every call --caller-rate refuses counts once in
// cbkgate_rate_limited_total, over both transports.
func TestMetricsRateLimited(t *testing.T) {
	t.Parallel()
	_, up := newEmulator(t, "up-secret")
	s := startServer(t, up.URL, gatetest.Held("up-secret"), gatetest.Args("--caller-rate=1"))
	refused := 0
	for _, c := range []caller{s.grpcCaller(""), s.httpCaller("")} {
		for range 4 {
			_, st := c.create(t, &tokenv1.CreateRequest{UserId: "rl-user"})
			switch st.Code() {
			case codes.OK:
			case codes.ResourceExhausted:
				refused++
			default:
				t.Fatalf("%v create: %v", c, st.Err())
			}
		}
	}
	if refused == 0 {
		t.Fatal("8 creates within moments at --caller-rate=1 (burst 2): none refused")
	}
	all := scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics")
	if got := all["cbkgate_rate_limited_total{}"]; got != float64(refused) {
		t.Errorf("cbkgate_rate_limited_total = %v, want %d (the calls refused)", got, refused)
	}
}
