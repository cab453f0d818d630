package app_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

const replayedHeader = "Idempotent-Replayed"

// post sends body to path on s's HTTP port with contentType and returns
// the answer's status, header and body.
func post(t *testing.T, s *server, path, contentType, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := s.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.Bytes()
}

// A Create with a request_id runs once whichever surface each try comes
// by (gRPC, the JSON gateway, Connect): every repeat gets the same id and
// secret, marked replayed in the surface's own way; a repeat of a recorded
// refusal is marked too. The audit lines carry the idempotency key, and
// the replays are counted.
func TestIdempotentCreateOnEverySurface(t *testing.T) {
	_, up := newEmulator(t, "held")
	s := startServer(t, up.URL, gatetest.Held("held"))
	body := `{"name":"n","meta":{"a":1,"b":[true]},"request_id":"surface-1"}`

	code, h, b := post(t, s, tokensPath("u1"), "application/json", body)
	if code != 200 || h.Get(replayedHeader) != "" {
		t.Fatalf("first create: %d %q %s", code, h.Get(replayedHeader), b)
	}
	first := &tokenv1.CreateResponse{}
	if err := protojson.Unmarshal(b, first); err != nil {
		t.Fatal(err)
	}
	same := func(what string, b []byte) {
		t.Helper()
		got := &tokenv1.CreateResponse{}
		if err := protojson.Unmarshal(b, got); err != nil {
			t.Fatalf("%s: %v: %s", what, err, b)
		}
		if got.GetId() != first.GetId() || got.GetToken() != first.GetToken() || got.GetToken() == "" {
			t.Fatalf("%s answered %v, first %v", what, got, first)
		}
	}
	// The gateway, with the JSON written otherwise (key order, 1.0).
	code, h, b = post(t, s, tokensPath("u1"), "application/json", `{"request_id":"surface-1","meta":{"b":[true],"a":1.0},"name":"n"}`)
	if code != 200 || h.Get(replayedHeader) != "true" {
		t.Fatalf("gateway repeat: %d %q %s", code, h.Get(replayedHeader), b)
	}
	same("gateway repeat", b)
	// Connect (JSON).
	code, h, b = post(t, s, "/cbkgate.token.v1.TokenService/Create", "application/json", `{"userId":"u1","name":"n","meta":{"a":1,"b":[true]},"requestId":"surface-1"}`)
	if code != 200 || h.Get(replayedHeader) != "true" {
		t.Fatalf("connect repeat: %d %q %s", code, h.Get(replayedHeader), b)
	}
	same("connect repeat", b)
	// gRPC.
	req := &tokenv1.CreateRequest{}
	if err := protojson.Unmarshal([]byte(body), req); err != nil {
		t.Fatal(err)
	}
	req.UserId = "u1"
	var md metadata.MD
	resp, err := s.Client().Create(callCtx(t), req, grpc.Header(&md))
	if err != nil || resp.GetToken() != first.GetToken() || strings.Join(md.Get("idempotent-replayed"), ",") != "true" {
		t.Fatalf("grpc repeat: %v %v, header %v", resp, err, md)
	}
	if n := up.Calls(fu.Create); n != 1 {
		t.Fatalf("%d upstream creates, want 1", n)
	}

	// A recorded refusal is replayed, marked, through the gateway too.
	up.Script(fu.Create, fu.Error(409, "CONFLICT", "no"))
	for i := range 2 {
		code, h, b = post(t, s, tokensPath("u1"), "application/json", `{"name":"x","request_id":"refused-1"}`)
		if code != http.StatusConflict || (h.Get(replayedHeader) == "true") != (i == 1) {
			t.Fatalf("refusal %d: %d replayed %q %s", i, code, h.Get(replayedHeader), b)
		}
	}
	if n := up.Calls(fu.Create); n != 2 {
		t.Fatalf("%d upstream creates, want 2", n)
	}

	keyed, startLine := 0, 0
	for _, l := range s.Logs().JSON(t) {
		if l["msg"] == "audit" && l["idempotency_key"] != nil {
			keyed++
			if l["request_id"] == l["idempotency_key"] {
				t.Fatalf("audit line's request_id is the idempotency key: %v", l)
			}
		}
		if l["msg"] == "state in memory: request_id and --caller-rate hold per replica" {
			startLine++
		}
	}
	if keyed != 6 || startLine != 1 {
		t.Fatalf("%d audit lines with idempotency_key (want 6), %d start lines about memory state (want 1):\n%s", keyed, startLine, s.Logs().String())
	}
	if strings.Contains(s.Logs().String(), first.GetToken()) {
		t.Fatal("the token's secret was logged")
	}
	m := scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics")
	if got := m["cbkgate_idempotent_replays_total{}"]; got != 4 {
		t.Fatalf("cbkgate_idempotent_replays_total = %v, want 4", got)
	}
}

// With Redis unreachable a Create with a request_id fails closed
// (UNAVAILABLE STATE_UNAVAILABLE, nothing upstream), one without is
// served, --caller-rate falls back to the replica's own limiter, /readyz
// stays 200, and the failures are counted. No line shows the password.
func TestRedisDownFailsClosed(t *testing.T) {
	_, up := newEmulator(t, "held")
	keyFile := filepath.Join(t.TempDir(), "state.key")
	if err := os.WriteFile(keyFile, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on any more: the store's dial is refused.
	gone := fu.Start(t)
	gone.Close()
	dead := strings.TrimPrefix(gone.URL, "http://")
	s := startServer(t, up.URL, gatetest.Held("held"),
		gatetest.Args("--state=redis://:pw-s3cr3t@"+dead+"/0", "--state-key-file="+keyFile, "--caller-rate=100"))
	c := s.grpcCaller("")
	_, st := c.create(t, &tokenv1.CreateRequest{UserId: "u1", RequestId: "down-1"})
	if st.Code() != codes.Unavailable || gatetest.ErrorInfo(st).GetReason() != "STATE_UNAVAILABLE" {
		t.Fatalf("idempotent create with Redis down: %v", st)
	}
	if n := up.Calls(fu.Create); n != 0 {
		t.Fatalf("%d upstream creates with Redis down, want 0", n)
	}
	for i := range 5 {
		if r, st := c.create(t, &tokenv1.CreateRequest{UserId: "u1"}); st.Code() != codes.OK || r.GetToken() == "" {
			t.Fatalf("create %d without request_id: %v", i, st)
		}
	}
	resp, err := s.HTTP().Get(s.URL() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz with Redis down: %v %v", resp, err)
	}
	resp.Body.Close()
	m := scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics")
	if m[`cbkgate_state_errors_total{op="record"}`] < 1 || m[`cbkgate_state_errors_total{op="rate"}`] < 1 {
		t.Fatalf("state errors: record %v, rate %v", m[`cbkgate_state_errors_total{op="record"}`], m[`cbkgate_state_errors_total{op="rate"}`])
	}
	logs := s.Logs().String()
	if strings.Contains(logs, "pw-s3cr3t") {
		t.Fatal("the Redis password was logged")
	}
	if !strings.Contains(logs, "falls back") {
		t.Fatalf("no line about the rate's fallback:\n%s", logs)
	}
}
