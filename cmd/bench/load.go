package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// call is one request of a workload; it returns only after the whole answer
// has been read and decoded, as a real client would.
type call func(ctx context.Context) error

// run is what one side of a pair did in one round.
type run struct {
	calls   int
	elapsed time.Duration
	lats    []time.Duration // one per call
	cpu     time.Duration   // cbkgate's CPU time over the round (cbkgate sides only)
}

func (r run) perSecond() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// load runs f from conc goroutines for d and records every call's latency.
func load(ctx context.Context, conc int, d time.Duration, f call) (run, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		lats  []time.Duration
		first error
	)
	start := time.Now()
	deadline := start.Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if err := f(ctx); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return run{}, first
	}
	return run{calls: len(lats), elapsed: time.Since(start), lats: lats}, nil
}

// createBody is the one create every side sends: the same fields, the same
// JSON, so that the only difference is the path it takes.
var createBody = []byte(`{"name":"bench","description":"created by cmd/bench","meta":{"team":"perf","env":"bench"}}`)

func grpcCreate(c tokenv1.TokenServiceClient, user string) (call, error) {
	req := &tokenv1.CreateRequest{UserId: user}
	// The same fields as createBody, through the same JSON mapping.
	var in struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		Meta        map[string]any `json:"meta"`
	}
	if err := json.Unmarshal(createBody, &in); err != nil {
		return nil, err
	}
	req.Name, req.Description = in.Name, in.Description
	meta, err := structpb.NewStruct(in.Meta)
	if err != nil {
		return nil, err
	}
	req.Meta = meta
	return func(ctx context.Context) error {
		resp, err := c.Create(ctx, req)
		if err != nil {
			return fmt.Errorf("gRPC Create: %w", err)
		}
		if resp.GetId() == "" || resp.GetToken() == "" {
			return errors.New("gRPC Create: no id or token")
		}
		return nil
	}, nil
}

// connectCreateBody is createBody as a Connect unary JSON request, which
// carries the user id in the body rather than the path.
var connectCreateBody = []byte(`{"user_id":"` + createUser + `",` + string(createBody[1:]))

// httpCreate posts createBody to url: the emulator's REST route (with the
// upstream secret) or cbkgate's gateway route (no credential needed).
func httpCreate(hc *http.Client, url, bearer string) call {
	return postCreate(hc, url, bearer, createBody)
}

// connectCreate is Create through cbkgate's Connect route (Connect unary,
// JSON): the same HTTP/1.1 request as the gateway's, transcoded by vanguard.
func connectCreate(hc *http.Client, url string) call {
	return postCreate(hc, url, "", connectCreateBody)
}

// postCreate posts body as JSON to url and checks that the answer names
// the new token's id and secret (the gateway and Connect both answer
// {"id", "token", ...}).
func postCreate(hc *http.Client, url, bearer string, body []byte) call {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST %s: %s: %.200s", url, resp.Status, b)
		}
		var out struct {
			ID    string `json:"id"`
			Token string `json:"token"`
		}
		if err := json.Unmarshal(b, &out); err != nil || out.ID == "" || out.Token == "" {
			return fmt.Errorf("POST %s: unexpected answer %.200s", url, b)
		}
		return nil
	}
}

// grpcList reads a user's whole listing through cbkgate, touching each
// token's id, and returns how many tokens came.
func grpcList(ctx context.Context, c tokenv1.TokenServiceClient, user string) (int, error) {
	stream, err := c.List(ctx, &tokenv1.ListRequest{UserId: user})
	if err != nil {
		return 0, err
	}
	n, idBytes := 0, 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("gRPC List after %d tokens: %w", n, err)
		}
		idBytes += len(resp.GetToken().GetId())
		n++
	}
	if n > 0 && idBytes == 0 {
		return n, errors.New("gRPC List: tokens without ids")
	}
	return n, nil
}

// jsonlList reads a user's whole listing from the emulator's JSONL stream,
// decoding each line for its token's id, and returns how many tokens came.
func jsonlList(ctx context.Context, hc *http.Client, url, bearer string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/jsonl")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var ev struct {
				Data struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			if jerr := json.Unmarshal(line, &ev); jerr != nil || ev.Data.ID == "" {
				return n, fmt.Errorf("JSONL line %d: not a token: %.200s", n+1, line)
			}
			n++
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// timed runs a listing once and reports it as a run of n tokens.
func timed(f func() (int, error)) (run, error) {
	start := time.Now()
	n, err := f()
	return run{calls: n, elapsed: time.Since(start)}, err
}
