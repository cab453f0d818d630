package app_test

// Benchmarks of whole calls through an in-process cbkgate in front of the
// emulator on loopback. They exist to be profiled, e.g.
//
//	go test -run '^$' -bench AppCreateGRPC -cpuprofile cpu.out ./internal/app
//
// The profile holds the client and the emulator too; cmd/bench measures
// cbkgate alone, in its own process.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/logging"
)

const benchUpstreamSecret = "bench-upstream-secret"

type benchApp struct {
	emu    *emulator.Emulator
	client tokenv1.TokenServiceClient
	http   string // gateway base URL
}

// benchStart runs cbkgate in this process with a held secret and no caller
// authentication, logging at warn, in front of a fresh emulator.
func benchStart(b *testing.B) *benchApp {
	b.Helper()
	emu := emulator.New(emulator.Options{Secret: benchUpstreamSecret})
	up := httptest.NewServer(emu)
	b.Cleanup(up.Close)
	cfg, err := config.Load([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--upstream=" + up.URL,
		"--allow-unauthenticated", "--log-level=warn",
	}, func(k string) string {
		if k == "CHATBOTKIT_API_SECRET" {
			return benchUpstreamSecret
		}
		return ""
	})
	if err != nil {
		b.Fatal(err)
	}
	a, err := app.New(cfg, logging.New(io.Discard, cfg.LogLevel, "json"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	conn, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	for i := 0; ; i++ {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if i == 200 {
			b.Fatalf("cbkgate not serving: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &benchApp{emu: emu, client: tokenv1.NewTokenServiceClient(conn), http: "http://" + a.HTTPAddr().String()}
}

// BenchmarkAppCreateGRPC runs creates from 16 goroutines on 2 CPUs.
func BenchmarkAppCreateGRPC(b *testing.B) {
	s := benchStart(b)
	meta, _ := structpb.NewStruct(map[string]any{"team": "perf", "env": "bench"})
	req := &tokenv1.CreateRequest{UserId: "bench", Name: "bench", Description: "created by a benchmark", Meta: meta}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.client.Create(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAppCreateGateway runs creates through the JSON gateway from 16
// goroutines on 2 CPUs.
func BenchmarkAppCreateGateway(b *testing.B) {
	s := benchStart(b)
	body := []byte(`{"name":"bench","description":"created by a benchmark","meta":{"team":"perf","env":"bench"}}`)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	url := s.http + "/v1/users/bench/tokens"
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %s", resp.Status)
				return
			}
		}
	})
}

// BenchmarkAppListGRPC lists 10,000 tokens per op through gRPC.
func BenchmarkAppListGRPC(b *testing.B) {
	const perOp = 10_000
	s := benchStart(b)
	s.emu.Seed("bench", perOp)
	b.ResetTimer()
	for b.Loop() {
		stream, err := s.client.List(context.Background(), &tokenv1.ListRequest{UserId: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetToken().GetId() != "" {
				n++
			}
		}
		if n != perOp {
			b.Fatalf("listed %d tokens, want %d", n, perOp)
		}
	}
	b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkAppCreateConnect runs creates through Connect unary JSON (what
// curl and connect-web send) from 16 goroutines on 2 CPUs, and reports the
// process's CPU time per create (the client and the emulator included),
// which a loaded machine skews less than the wall time.
func BenchmarkAppCreateConnect(b *testing.B) {
	benchConnectCreate(b, "application/json",
		[]byte(`{"user_id":"bench","name":"bench","description":"created by a benchmark","meta":{"team":"perf","env":"bench"}}`))
}

// BenchmarkAppCreateGRPCWeb: BenchmarkAppCreateConnect over gRPC-Web with
// binary protobuf, the path cbkgate passes on untouched.
func BenchmarkAppCreateGRPCWeb(b *testing.B) {
	meta, _ := structpb.NewStruct(map[string]any{"team": "perf", "env": "bench"})
	msg, err := proto.Marshal(&tokenv1.CreateRequest{UserId: "bench", Name: "bench", Description: "created by a benchmark", Meta: meta})
	if err != nil {
		b.Fatal(err)
	}
	frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	benchConnectCreate(b, "application/grpc-web+proto", frame)
}

func benchConnectCreate(b *testing.B, contentType string, body []byte) {
	s := benchStart(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	url := s.http + "/cbkgate.token.v1.TokenService/Create"
	b.SetParallelism(8)
	cpuBefore := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Post(url, contentType, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Grpc-Status") != "" && resp.Header.Get("Grpc-Status") != "0" {
				b.Errorf("status %s, grpc-status %s", resp.Status, resp.Header.Get("Grpc-Status"))
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpuBefore)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
