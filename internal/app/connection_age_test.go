package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestMaxConnectionAgeRotatesConnections: with --max-connection-age, one
// long-lived client connection is closed gracefully and replaced by a new
// one (so an L4 balancer can place it elsewhere), while a List that spans
// several connection ages completes in full on the old connection, and no
// call, gRPC or through the gateway (whose in-memory connection is aged
// too), fails.
func TestMaxConnectionAgeRotatesConnections(t *testing.T) {
	const (
		secret    = "held-secret"
		listUser  = "long-lister"
		listSize  = 12
		lineDelay = 250 * time.Millisecond // 12 lines: a List of ~3 s, over two ages
	)
	emu, up := newEmulator(t, secret)
	emu.Seed(listUser, listSize)
	up.SetDefault(fu.List, fu.PaceLines(lineDelay, fu.Forward(emu)))
	s := startServer(t, up.URL, gatetest.Held(secret), gatetest.Args("--max-connection-age=1s"))

	cc, dials := gatetest.DialCounting(t, s.GRPCAddr())
	client := tokenv1.NewTokenServiceClient(cc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// The List starts on the first connection and gets one token at a time.
	stream, err := client.List(ctx, &tokenv1.ListRequest{UserId: listUser, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("first List message: %v", err)
	}
	if got := dials.Load(); got != 1 {
		t.Fatalf("%d dials before the List's first token, want 1", got)
	}

	// Meanwhile, unary calls over the same ClientConn and through the
	// gateway, until the client has dialled at least twice more.
	var (
		wg                   sync.WaitGroup
		grpcCalls, httpCalls atomic.Int64
		failMu               sync.Mutex
		failures             []string
	)
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "u", Name: fmt.Sprint("g", i)}); err != nil {
				fail("gRPC Create %d: %v", i, err)
			}
			grpcCalls.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		hc := s.HTTPClient(nil)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := hc.Post(s.URL()+"/v1/users/u/tokens", "application/json", strings.NewReader(fmt.Sprintf(`{"name":"h%d"}`, i)))
			if err != nil {
				fail("HTTP Create %d: %v", i, err)
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail("HTTP Create %d: %d %s", i, resp.StatusCode, body)
				}
			}
			httpCalls.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	ids := []string{first.GetToken().GetId()}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("List cut off after %d tokens: %v", len(ids), err)
		}
		ids = append(ids, m.GetToken().GetId())
	}
	dialsAtListEnd := dials.Load()
	for dials.Load() < 3 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	if len(ids) != listSize {
		t.Errorf("List across connection ages returned %d tokens, want %d", len(ids), listSize)
	}
	if dialsAtListEnd < 2 {
		t.Errorf("client dialled %d times during a ~3 s List with a 1 s connection age, want a new connection", dialsAtListEnd)
	}
	if ctx.Err() != nil {
		t.Errorf("client dialled only %d times within 30 s at a 1 s connection age", dials.Load())
	}
	for _, f := range failures {
		t.Error(f)
	}
	if grpcCalls.Load() == 0 || httpCalls.Load() == 0 {
		t.Errorf("made %d gRPC and %d HTTP calls, want both", grpcCalls.Load(), httpCalls.Load())
	}
	t.Logf("%d dials; %d gRPC and %d HTTP creates during the List, %d failed", dials.Load(), grpcCalls.Load(), httpCalls.Load(), len(failures))
}
