// Package chatbotkit is cbkgate's client for ChatBotKit's partner user token
// REST API: list (as one JSONL stream, see stream.go, or one JSON page at a
// time), create, update and delete. It knows nothing of gRPC.
//
// What it takes care of, once, for every caller: escaping each id as exactly
// one path segment; retrying list reads on transient failures with
// exponential backoff, full jitter and Retry-After, within the caller's
// deadline; retrying a create, update or delete only when the request
// provably never reached the upstream; capping every body it reads; and
// turning every failure into an error that errors.Is / errors.As can sort
// (see the Err* variables and *APIError). It never logs, and no secret
// appears in an error string.
package chatbotkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cbkgate/cbkgate/internal/secret"
)

const (
	// defaultUserAgent is the User-Agent when Options.UserAgent is empty.
	defaultUserAgent = "cbkgate/dev"
	// DefaultMaxAttempts bounds the attempts of a list read, the first
	// included, and of a write that never reached the upstream.
	DefaultMaxAttempts = 4
	// defaultMaxBackoff caps the backoff between attempts (not a
	// Retry-After wait).
	defaultMaxBackoff = 2 * time.Second
	// DefaultMaxBodyBytes caps a JSON response body.
	DefaultMaxBodyBytes = 16 << 20
)

const (
	// baseBackoff is the ceiling of the first wait; each later wait doubles
	// it up to maxBackoff, and the wait itself is uniform in [0, ceiling].
	baseBackoff = 100 * time.Millisecond
	// maxRetryAfterWait: an upstream asking for a longer pause than this gets
	// its error returned at once (with RetryAfter set) instead of a wait.
	maxRetryAfterWait = 30 * time.Second
	// maxErrorBodyBytes caps how much of a non-2xx body is read.
	maxErrorBodyBytes = 64 << 10
	// maxDrainBytes is how much unread body is discarded to keep a
	// connection reusable; past that the connection is simply closed.
	maxDrainBytes = 4 << 10
	// maxSizeHint caps the buffer made up front for a body of announced
	// length; a page of 100 tokens is tens of KiB.
	maxSizeHint = 256 << 10
)

// Options configures a Client. Only BaseURL is required.
type Options struct {
	// BaseURL is the API root, e.g. "https://api.chatbotkit.com"; request
	// paths "/v1/partner/user/..." are appended to its path.
	BaseURL string
	// UserAgent defaults to "cbkgate/dev".
	UserAgent string
	// Transport carries the requests; nil means NewTransport(). The
	// Client's own http.Client on it never follows redirects.
	Transport http.RoundTripper
	// RequestHeaders, if set, adds headers to every attempt's request from
	// the call's context (the request id, the trace context). It must not
	// touch Authorization.
	RequestHeaders func(ctx context.Context, h http.Header)
	// OnAttempt, if set, is told of every attempt at an upstream request
	// when its status line (or its failure) is known. It must be quick and
	// safe for concurrent use.
	OnAttempt func(Attempt)
}

// Client calls the partner user token API. It is safe for concurrent use.
type Client struct {
	base       string // scheme://host/prefix, no trailing slash, escaped
	userAgent  string
	hc         *http.Client
	onAttempt  func(Attempt)
	reqHeaders func(context.Context, http.Header)

	// The limits and seams below are set by New; package tests change them.
	maxAttempts int           // DefaultMaxAttempts
	maxBackoff  time.Duration // defaultMaxBackoff
	maxBody     int64         // DefaultMaxBodyBytes
	sleep       func(ctx context.Context, d time.Duration) error
	randN       func(n int64) int64
}

// New validates opts and returns a Client.
func New(opts Options) (*Client, error) {
	u, err := ParseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("chatbotkit: BaseURL: %w", err)
	}
	c := &Client{
		base:        u.Scheme + "://" + u.Host + u.EscapedPath(),
		userAgent:   opts.UserAgent,
		onAttempt:   opts.OnAttempt,
		reqHeaders:  opts.RequestHeaders,
		maxAttempts: DefaultMaxAttempts,
		maxBackoff:  defaultMaxBackoff,
		maxBody:     DefaultMaxBodyBytes,
		sleep:       sleepCtx,
		randN:       rand.Int64N,
	}
	if c.userAgent == "" {
		c.userAgent = defaultUserAgent
	} else if !validHeaderValue(c.userAgent) {
		return nil, errors.New("chatbotkit: UserAgent is not a valid header value")
	}
	rt := opts.Transport
	if rt == nil {
		rt = NewTransport()
	}
	c.hc = &http.Client{
		Transport: rt,
		// An API answers, it does not redirect; following a 301 would
		// turn a POST into a GET and send the request somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// NewTransport returns a transport tuned for a proxy under load: keep-alive
// connections, a pool deep enough for many concurrent calls to one host,
// bounded dial and TLS handshake times, HTTP/2 where the server offers it.
func NewTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// CloseIdleConnections closes the idle connections of the client's pool.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Attempt is one attempt at an upstream request, as OnAttempt sees it.
type Attempt struct {
	// Operation is "list", "create", "update" or "delete".
	Operation string
	// Status is the answer's HTTP status, 0 when no answer came (Err then
	// says why).
	Status int
	Err    error
	// Duration runs from sending the request to its status line or failure.
	Duration time.Duration
	// Retry: an earlier attempt at the same request failed.
	Retry bool
}

// request is one upstream call, ready to be sent any number of times.
type request struct {
	op string // for error strings: "list", "create", ...
	// operation is the op's family for OnAttempt: list, create, update,
	// delete.
	operation string
	// attempts counts calls of send, for Attempt.Retry.
	attempts int
	method   string
	url      string
	body     []byte // nil: no body
	cred     string
	// accept is the Accept header; "" means application/json.
	accept string
	// sends counts the connections used to send this request, over all
	// attempts. net/http resends an idempotent request on a fresh
	// connection by itself when a reused one fails before any answer;
	// every send counts against maxAttempts.
	sends atomic.Int32
}

// newRequest checks the credential and the ids and builds the URL
// base/v1/partner/user/{userID}/token[/{tokenID}]/{action}, each id escaped
// as exactly one path segment. ids are the user id and, for update and
// delete, the token id.
func (c *Client) newRequest(op, method string, cred secret.Value, action string, ids ...string) (*request, error) {
	if cred.IsZero() {
		return nil, fmt.Errorf("%w: %s", ErrNoCredential, op)
	}
	if !validHeaderValue(cred.Reveal()) {
		return nil, fmt.Errorf("%w: %s: the credential is not a valid header value", ErrNoCredential, op)
	}
	var b strings.Builder
	b.WriteString(c.base)
	b.WriteString("/v1/partner/user")
	for i, id := range ids {
		kind := "user id"
		if i > 0 {
			kind = "token id"
		}
		if err := checkID(kind, id); err != nil {
			return nil, err
		}
		b.WriteByte('/')
		b.WriteString(url.PathEscape(id))
		if i == 0 {
			b.WriteString("/token")
		}
	}
	b.WriteByte('/')
	b.WriteString(action)
	return &request{op: op, operation: action, method: method, url: b.String(), cred: cred.Reveal()}, nil
}

func checkID(kind, id string) error {
	switch id {
	case "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidID, kind)
	case ".", "..":
		return fmt.Errorf("%w: %s %q is a relative path segment", ErrInvalidID, kind, id)
	}
	return nil
}

// validHeaderValue mirrors net/http's rule: no control characters but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// send performs one HTTP exchange. It returns the response only for a 2xx
// status; a non-2xx status is read into an *APIError.
func (c *Client) send(ctx context.Context, r *request) (*http.Response, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	// Record whether a connection was ever obtained and whether the request
	// headers went out: with neither, the upstream never saw the request.
	// WroteHeaders runs on the transport's write goroutine.
	var gotConn, wrote atomic.Bool
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { gotConn.Store(true); r.sends.Add(1) },
		WroteHeaders: func() { wrote.Store(true) },
	})
	req, err := http.NewRequestWithContext(tctx, r.method, r.url, body)
	if err != nil {
		return nil, fmt.Errorf("chatbotkit: %s: building the request: %w", r.op, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.cred)
	req.Header.Set("User-Agent", c.userAgent)
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.reqHeaders != nil {
		c.reqHeaders(ctx, req.Header)
	}
	r.attempts++
	start := time.Now()
	resp, err := c.hc.Do(req)
	if c.onAttempt != nil {
		a := Attempt{Operation: r.operation, Err: err, Duration: time.Since(start), Retry: r.attempts > 1}
		if resp != nil {
			a.Status = resp.StatusCode
		}
		c.onAttempt(a)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err := fmt.Errorf("chatbotkit: %s: %w", r.op, cerr)
			if !gotConn.Load() && !wrote.Load() {
				return nil, &notSentError{err}
			}
			return nil, err
		}
		return nil, &unavailableError{
			op:    r.op,
			cause: err,
			// A dial error alone is not proof: a transport that does not
			// report trace events could have failed a later exchange with
			// one. Both together are.
			neverReached: !gotConn.Load() && !wrote.Load() && isDialError(err),
			permanent:    isCertError(err),
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.readAPIError(ctx, r, resp)
	}
	return resp, nil
}

// readAPIError turns a non-2xx response into an *APIError, reading at most
// maxErrorBodyBytes of its body.
func (c *Client) readAPIError(ctx context.Context, r *request, resp *http.Response) error {
	defer drainClose(resp.Body)
	e := &APIError{
		Status:     resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("chatbotkit: %s: %w", r.op, cerr)
		}
		// The status is known; a body cut short only loses the details.
		b = nil
	}
	var wire struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	}
	if json.Unmarshal(b, &wire) == nil {
		e.Code, e.Message = wire.Code, wire.Message
	}
	if e.Code == "" {
		e.Code = fallbackCode(e.Status)
	}
	if e.Message == "" {
		e.Message = fallbackMessage(e.Status)
	}
	// An upstream that echoes a credential back must not put it into our
	// error strings, nor through them to the caller or the log.
	e.Code = redact(e.Code, r.cred)
	e.Message = redact(e.Message, r.cred)
	return e
}

// Redact returns s with cred, the secret a call spends (the held one or a
// caller's pass-through bearer), replaced by secret.Redacted. Any length
// counts: a short secret is still a secret, and a word it mangles in an
// upstream message is the lesser harm.
func (c *Client) Redact(s string, cred secret.Value) string {
	return redact(s, cred.Reveal())
}

func redact(s, cred string) string {
	if cred != "" {
		s = strings.ReplaceAll(s, cred, secret.Redacted)
	}
	return s
}

// readJSON reads a 2xx body of at most maxBody bytes and decodes it into v.
// With quiet, the decoder's complaint is left out of the error (a create
// response holds a secret, and type errors quote numbers).
func (c *Client) readJSON(ctx context.Context, r *request, resp *http.Response, v any, quiet bool) error {
	b, err := c.readBody(ctx, r, resp)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		if quiet {
			return fmt.Errorf("%w: %s: not the expected JSON", ErrMalformedResponse, r.op)
		}
		return fmt.Errorf("%w: %s: %v", ErrMalformedResponse, r.op, err)
	}
	return nil
}

// readBody reads a 2xx body of at most maxBody bytes and closes it.
func (c *Client) readBody(ctx context.Context, r *request, resp *http.Response) ([]byte, error) {
	if resp.ContentLength > c.maxBody {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s: Content-Length %d exceeds the %d-byte cap", ErrResponseTooLarge, r.op, resp.ContentLength, c.maxBody)
	}
	b, err := readAll(io.LimitReader(resp.Body, c.maxBody+1), resp.ContentLength, c.maxBody+1)
	if err != nil {
		resp.Body.Close()
		return nil, c.bodyError(ctx, r.op, err)
	}
	if int64(len(b)) > c.maxBody {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s: body exceeds the %d-byte cap", ErrResponseTooLarge, r.op, c.maxBody)
	}
	drainClose(resp.Body)
	return b, nil
}

// readAll is io.ReadAll starting with room for size bytes (the body's
// Content-Length, -1 when unknown), so that a page of a listing is read
// without regrowing the buffer on the way. Room is made up front only up to
// maxSizeHint: beyond that, memory follows the bytes that actually arrive,
// and the buffer never grows past limit (the most r can yield), so a body
// at the cap costs the cap, not twice it.
func readAll(r io.Reader, size, limit int64) ([]byte, error) {
	b := make([]byte, 0, min(max(512, size+1), maxSizeHint)) // +1: room to read the EOF
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			if next := int64(2 * cap(b)); next > limit {
				grown := make([]byte, len(b), max(limit, int64(len(b))+1))
				copy(grown, b)
				b = grown
				continue
			}
			b = append(b, 0)[:len(b)] // let append pick the next size
		}
	}
}

// bodyError classifies a failure to read a 2xx body: the caller's context,
// or a body cut short (unexpected EOF, reset), which is ErrUnavailable.
func (c *Client) bodyError(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("chatbotkit: %s: %w", op, cerr)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &unavailableError{op: op, cause: fmt.Errorf("reading the response body: %w", err)}
}

// drainClose discards a little unread body so the connection can go back to
// the pool, then closes it. A body with more left is closed with its
// connection: reading on could take any amount of time.
func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrainBytes)
	_ = body.Close()
}

// retry runs try until it succeeds, fails for good, or the attempts (each
// send of r, see request.sends), the caller's deadline or maxRetryAfterWait
// say stop. idempotent: try is a read,
// retried on any transient failure; otherwise only failures that never
// reached the upstream are retried.
func (c *Client) retry(ctx context.Context, r *request, idempotent bool, try func() error) error {
	for attempt := 1; ; attempt++ {
		err := try()
		attempt = max(attempt, int(r.sends.Load()))
		if err == nil || attempt >= c.maxAttempts {
			return err
		}
		ok, retryAfter := retryable(err, idempotent)
		if !ok || retryAfter > maxRetryAfterWait {
			return err
		}
		wait := max(c.backoff(attempt), retryAfter)
		if deadline, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(deadline) {
			// The wait would outlast the caller: the last answer is more
			// useful to them now than a deadline error later.
			return err
		}
		if serr := c.sleep(ctx, wait); serr != nil {
			return notSentUnless(idempotent, fmt.Errorf("chatbotkit: %w (while waiting to retry after: %v)", serr, err))
		}
		if gate, ok := ctx.Value(retryGateKey{}).(func(context.Context) error); ok {
			if gerr := gate(ctx); gerr != nil {
				return notSentUnless(idempotent, fmt.Errorf("chatbotkit: %w (while waiting to retry after: %v)", gerr, err))
			}
		}
	}
}

// notSentUnless marks err, which ended the retries of a write, as NotSent:
// a write is retried only when no attempt reached the upstream. A read's
// attempts may have, so it is left as it is.
func notSentUnless(idempotent bool, err error) error {
	if idempotent {
		return err
	}
	return &notSentError{err}
}

type retryGateKey struct{}

// WithRetryGate returns ctx with gate, which the client calls before each
// retry of a request (not before the first attempt) and waits on: a rate
// limit that counts every request sent upstream, retries included, puts
// itself there. An error from gate ends the retries with it.
func WithRetryGate(ctx context.Context, gate func(context.Context) error) context.Context {
	return context.WithValue(ctx, retryGateKey{}, gate)
}

// retryable reports whether err is worth another attempt, and the least
// wait the upstream asked for.
func retryable(err error, idempotent bool) (bool, time.Duration) {
	var ue *unavailableError
	if errors.As(err, &ue) {
		if idempotent {
			return !ue.permanent, 0
		}
		return ue.neverReached, 0
	}
	var ae *APIError
	if idempotent && errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true, ae.RetryAfter
		}
	}
	return false, 0
}

// backoff returns the jittered wait after the given (1-based) failed
// attempt: uniform in [0, min(maxBackoff, baseBackoff·2^(attempt-1))].
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.maxBackoff
	if shift := attempt - 1; shift < 32 {
		if d := baseBackoff << shift; d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(c.randN(int64(ceiling) + 1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
