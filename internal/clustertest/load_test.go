//go:build haproxy

package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// listedUser holds seeded tokens that every List of the load reads in full
// and compares with what the emulator holds. listPageSize makes each List
// several upstream pages, so a List spans several upstream calls.
const (
	listedUser   = "listed"
	listedTokens = 120
	listPageSize = 25
	callTimeout  = 20 * time.Second
)

// load is steady traffic from workers, each creating tokens for its own
// user (unique names) and, every few calls, listing listedUser in full.
// Every call's outcome is counted; any error, or a List that is not exactly
// the expected tokens, is a failure.
type load struct {
	wantList []string // listedUser's ids, oldest first

	calls, failed, lists atomic.Int64

	mu       sync.Mutex
	failures []string                     // the first few, for the report
	created  map[string]map[string]string // user → name → id of every Create that succeeded
	attempts map[string]int               // user → Creates sent

	stop chan struct{}
	wg   sync.WaitGroup
}

func newLoad(wantList []string) *load {
	return &load{wantList: wantList, created: map[string]map[string]string{}, attempts: map[string]int{}, stop: make(chan struct{})}
}

func (l *load) fail(format string, args ...any) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

func (l *load) attempt(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts[user]++
}

func (l *load) record(user, name, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.created[user] == nil {
		l.created[user] = map[string]string{}
	}
	l.created[user][name] = id
}

// run starts a worker that calls step(i) for i = 0, 1, ... until stopped.
func (l *load) run(step func(i int)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			step(i)
			time.Sleep(2 * time.Millisecond)
		}
	}()
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// grpcWorker creates tokens for user and lists listedUser every fourth call.
func (l *load) grpcWorker(t *testing.T, client tokenv1.TokenServiceClient, user string) {
	l.run(func(i int) {
		ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
		defer cancel()
		l.calls.Add(1)
		if i%4 == 3 {
			l.lists.Add(1)
			ids, err := grpcList(ctx, client)
			if err != nil {
				l.fail("gRPC List: %v (after %d tokens)", err, len(ids))
			} else if !slices.Equal(ids, l.wantList) {
				l.fail("gRPC List: %d tokens, not the %d expected", len(ids), len(l.wantList))
			}
			return
		}
		name := fmt.Sprintf("%s-%d", user, i)
		l.attempt(user)
		res, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: user, Name: name})
		if err != nil {
			l.fail("gRPC Create %s: %v", name, err)
			return
		}
		l.record(user, name, res.GetId())
	})
}

func grpcList(ctx context.Context, client tokenv1.TokenServiceClient) ([]string, error) {
	stream, err := client.List(ctx, &tokenv1.ListRequest{UserId: listedUser, Order: tokenv1.Order_ORDER_ASC, PageSize: listPageSize})
	if err != nil {
		return nil, err
	}
	var ids []string
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return ids, nil
		}
		if err != nil {
			return ids, err
		}
		ids = append(ids, m.GetToken().GetId())
	}
}

// httpWorker does the same through the JSON gateway, over HTTP/1.1.
func (l *load) httpWorker(t *testing.T, client *http.Client, base, user string) {
	l.run(func(i int) {
		ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
		defer cancel()
		l.calls.Add(1)
		if i%4 == 3 {
			l.lists.Add(1)
			ids, err := httpList(ctx, client, base)
			if err != nil {
				l.fail("HTTP List: %v (after %d tokens)", err, len(ids))
			} else if !slices.Equal(ids, l.wantList) {
				l.fail("HTTP List: %d tokens, not the %d expected", len(ids), len(l.wantList))
			}
			return
		}
		name := fmt.Sprintf("%s-%d", user, i)
		l.attempt(user)
		body, _ := json.Marshal(map[string]string{"name": name})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/users/"+user+"/tokens", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			l.fail("HTTP Create %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var res struct{ ID string }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &res) != nil || res.ID == "" {
			l.fail("HTTP Create %s: %s %s", name, resp.Status, bytes.TrimSpace(b))
			return
		}
		l.record(user, name, res.ID)
	})
}

// httpList reads the NDJSON List: one {"result"} line per token, and a
// response is complete only when it has no {"error"} line.
func httpList(ctx context.Context, client *http.Client, base string) ([]string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/v1/users/%s/tokens?order=ORDER_ASC&page_size=%d", base, listedUser, listPageSize), nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("%s %s", resp.Status, bytes.TrimSpace(b))
	}
	var ids []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Result *struct {
				Token struct{ ID string } `json:"token"`
			} `json:"result"`
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return ids, fmt.Errorf("line %q: %v", sc.Bytes(), err)
		}
		if line.Error != nil {
			return ids, fmt.Errorf("error line %s", line.Error)
		}
		if line.Result == nil {
			return ids, fmt.Errorf("line without result: %q", sc.Bytes())
		}
		ids = append(ids, line.Result.Token.ID)
	}
	return ids, sc.Err()
}

// verifyCreates compares every user's tokens in the emulator with the
// Creates the load made: each Create sent shows up exactly once under the
// id its caller got (none lost), and nothing else is there (none sent
// twice). It returns how many creates it verified.
func (l *load) verifyCreates(t *testing.T, c *cluster) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	verified := 0
	for user, n := range l.attempts {
		ids, names := c.emulatorTokens(t, user)
		if len(ids) != n {
			t.Errorf("user %s: %d Creates sent, %d tokens upstream", user, n, len(ids))
		}
		seen := map[string]bool{}
		for i, name := range names {
			if seen[name] {
				t.Errorf("user %s: token %q created twice upstream", user, name)
			}
			seen[name] = true
			if want, ok := l.created[user][name]; !ok {
				t.Errorf("user %s: token %q upstream, but its Create did not succeed", user, name)
			} else if want != ids[i] {
				t.Errorf("user %s: token %q is %s upstream, its caller got %s", user, name, ids[i], want)
			} else {
				verified++
			}
		}
		for name := range l.created[user] {
			if !seen[name] {
				t.Errorf("user %s: Create %q succeeded but the token is not upstream", user, name)
			}
		}
	}
	return verified
}

func (l *load) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	attempts := 0
	for _, n := range l.attempts {
		attempts += n
	}
	return fmt.Sprintf("%d calls (%d creates, %d lists), %d failed", l.calls.Load(), attempts, l.lists.Load(), l.failed.Load())
}

func (l *load) failureList() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.failures, "\n")
}
