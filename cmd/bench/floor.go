package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/app"
)

// floorEnv, set in its environment, makes this binary the floor server
// instead of the benchmark.
const floorEnv = "CBKGATE_BENCH_FLOOR"

// floorServer is the least a gRPC front for the REST API can do, for scale:
// a grpc-go server whose Create sends the benchmark's create body to the
// upstream with a plain net/http client and answers with the id and token.
// No validation, auth, logging, retries, JSON handling of the request or
// error mapping: what is left is the cost of grpc-go and net/http
// themselves, tuned as cbkgate tunes them (app.TuneGC and app.ServerTuning:
// GOGC, static flow-control windows, kept handler goroutines). It takes cbkgate's flags so that
// startServer can run it like cbkgate; only --grpc-addr and --upstream are
// used.
func floorServer() error {
	app.TuneGC()
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	grpcAddr := fs.String("grpc-addr", "", "")
	upstream := fs.String("upstream", "", "")
	fs.String("http-addr", "", "")
	fs.String("log-level", "", "")
	fs.String("shutdown-timeout", "", "")
	fs.Bool("allow-unauthenticated", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	s := grpc.NewServer(app.ServerTuning()...)
	tokenv1.RegisterTokenServiceServer(s, &floorService{
		hc:     &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
		url:    *upstream + "/v1/partner/user/",
		bearer: "Bearer " + os.Getenv("CHATBOTKIT_API_SECRET"),
	})
	healthpb.RegisterHealthServer(s, health.NewServer())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	return s.Serve(lis)
}

type floorService struct {
	tokenv1.UnimplementedTokenServiceServer
	hc          *http.Client
	url, bearer string
}

func (f *floorService) Create(ctx context.Context, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url+req.GetUserId()+"/token/create", bytes.NewReader(createBody))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Authorization", f.bearer)
	r.Header.Set("Content-Type", "application/json")
	resp, err := f.hc.Do(r)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, status.Error(codes.Unknown, fmt.Sprint(resp.Status, err))
	}
	// The id and token, found without a JSON decoder: {"id":"...","token":"...",...}
	id, tok := jsonField(b, `"id":"`), jsonField(b, `"token":"`)
	if id == "" || tok == "" {
		return nil, status.Error(codes.Unknown, "unexpected answer")
	}
	return &tokenv1.CreateResponse{Id: id, Token: tok}, nil
}

// jsonField returns the string after key up to the next quote.
func jsonField(b []byte, key string) string {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
