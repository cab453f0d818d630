// Package emulator is an in-memory stand-in for ChatBotKit's partner user
// token endpoints (list, streamed list, create, update, delete), served as an
// http.Handler.
//
// It exists because ChatBotKit cannot be reached from development machines
// and CI: `cbkgate --emulator` runs it in-process, tests run the REST client
// against it over real HTTP, and the official SDKs can be pointed at it
// unchanged (see sdkcompat/). It follows ChatBotKit's published wire format
// (the public OpenAPI document of these endpoints, and what the official Node
// SDK was seen to send) and deliberately shares no code or
// types with the rest of cbkgate, so that a bug in the client cannot be
// hidden by the same bug here.
//
// Behaviour where ChatBotKit's documentation is silent, chosen to be what a
// real paginated API most plausibly does and to expose client bugs:
//   - Every user id exists; an unknown user simply has no tokens.
//   - Tokens are ordered by creation sequence (timestamps tie within a ms);
//     order defaults to desc, newest first.
//   - A cursor is opaque (base64url of a sequence number) and means "strictly
//     after this position", so it stays valid when its token or others are
//     deleted or created meanwhile. A page's cursor is the position of its
//     last item; an empty page returns the cursor it was asked with ("" when
//     none), so passing a cursor back never moves backwards or restarts.
//   - take defaults to 25 and is clamped to 100.
//   - The JSONL stream (Accept: application/jsonl) ignores take and sends
//     every token from the cursor on; an ascending stream stops at the tokens
//     that existed when it started, so it ends even under constant inserts.
//   - Query parameters other than cursor, order and take (such as the SDK's
//     meta.KEY filters) are ignored.
//   - There are no fault hooks: this is the well-behaved upstream
//     (WithLatency only delays its answers).
package emulator

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures an Emulator.
type Options struct {
	// Secret is the only Bearer secret accepted. Required: New panics when it
	// is empty, because an emulator that accepts anything would hide a client
	// that forgets to authenticate.
	Secret string
	// MaxTokens caps the tokens Create makes across all users; 0 means
	// 100,000 (defaultMaxTokens). cmd/bench, which creates about a million
	// in a run, raises it.
	MaxTokens int
}

// defaultMaxTokens caps the tokens Create makes across all users: far more
// than any test or manual session creates, and at most about 6 GiB even if
// every token carried maxStoredFieldBytes. A create past it is refused with
// 422, so that a dev-mode server left running cannot be grown without bound
// by its callers. Seed is not counted against it (benchmarks seed
// millions).
const defaultMaxTokens = 100_000

// maxStoredFieldBytes caps what one token stores of config and meta
// together (a create or update past it is refused with 413, as ChatBotKit
// refuses content that is too large), so that defaultMaxTokens bounds memory.
const maxStoredFieldBytes = 64 << 10

const (
	// defaultTake is the page size when a list request has no take.
	defaultTake = 25
	// maxTake caps take. Larger values are clamped rather than rejected,
	// as most paginated APIs do: a client asking for more still gets a
	// valid page and cursor, and a client that wrongly treats a page
	// shorter than take as the end of the list is caught.
	maxTake      = 100
	maxBodyBytes = 1 << 20 // request bodies over 1 MiB get 413
	streamBatch  = 256     // tokens copied per lock hold while streaming
)

// Emulator serves the token endpoints from memory. It is safe for concurrent
// use. Create it with New.
type Emulator struct {
	secretHash [sha256.Size]byte
	// idPrefix is random per instance, so ids from another run are unknown.
	idPrefix string

	maxTokens int // Options.MaxTokens

	mu      sync.RWMutex
	created int                // tokens Create made, less those deleted (see delete)
	seq     uint64             // last sequence number handed out, across users
	users   map[string][]token // per user, sorted by seq (creation order)
}

// token is kept small (no id string, no map entry) so that millions fit in
// memory: the id is derived from seq, and the rarely used fields live behind
// a pointer that is nil for seeded tokens.
type token struct {
	seq       uint64
	createdAt int64
	updatedAt int64
	fields    *fields // immutable once stored: updates swap in a new one
}

type fields struct {
	name, description *string
	config, meta      json.RawMessage // JSON objects, exactly as sent
}

// New returns an Emulator with no tokens. It panics if opts.Secret is empty.
func New(opts Options) *Emulator {
	if opts.Secret == "" {
		panic("emulator: Options.Secret is required")
	}
	e := &Emulator{
		secretHash: sha256.Sum256([]byte(opts.Secret)),
		idPrefix:   "tok_" + strings.ToLower(rand.Text()[:8]) + "_",
		maxTokens:  opts.MaxTokens,
		users:      make(map[string][]token),
	}
	if e.maxTokens <= 0 {
		e.maxTokens = defaultMaxTokens
	}
	return e
}

// Seed adds n tokens for userID without going through HTTP, for tests and
// benchmarks that need long lists. Seeded tokens have only id, createdAt and
// updatedAt. A million takes a few tens of milliseconds and about 32 MB.
func (e *Emulator) Seed(userID string, n int) {
	if n <= 0 {
		return
	}
	now := time.Now().UnixMilli()
	e.mu.Lock()
	defer e.mu.Unlock()
	list := slices.Grow(e.users[userID], n)
	for range n {
		e.seq++
		list = append(list, token{seq: e.seq, createdAt: now, updatedAt: now})
	}
	e.users[userID] = list
}

func (e *Emulator) tokenID(seq uint64) string {
	return e.idPrefix + strconv.FormatUint(seq, 36)
}

// parseTokenID returns the sequence number an id was made from; only the
// canonical spelling is accepted, so each token has exactly one id.
func (e *Emulator) parseTokenID(id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, e.idPrefix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 36, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 36) != rest {
		return 0, false
	}
	return seq, true
}

func encodeCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, seq))
}

func decodeCursor(s string) (uint64, bool) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// find returns the index of the token with sequence number seq in list.
func find(list []token, seq uint64) (int, bool) {
	return slices.BinarySearchFunc(list, seq, func(t token, s uint64) int {
		switch {
		case t.seq < s:
			return -1
		case t.seq > s:
			return 1
		}
		return 0
	})
}

// after copies up to n tokens that come strictly after position pos in the
// given order, stopping (ascending only) at sequence number limit.
// Ascending starts at pos 0 and descending at math.MaxUint64, so "no cursor"
// needs no special case.
func after(list []token, pos uint64, desc bool, n int, limit uint64) []token {
	i, _ := find(list, pos) // first index with seq >= pos
	if desc {
		lo := max(0, i-n)
		out := slices.Clone(list[lo:i])
		slices.Reverse(out)
		return out
	}
	if i < len(list) && list[i].seq == pos {
		i++
	}
	j := min(len(list), i+n)
	for j > i && list[j-1].seq > limit {
		j--
	}
	return slices.Clone(list[i:j])
}

// tokenJSON is a list item as ChatBotKit sends it. Config is stored but never
// listed: the list schema has no config.
type tokenJSON struct {
	ID          string          `json:"id"`
	Name        *string         `json:"name,omitempty"`
	Description *string         `json:"description,omitempty"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	CreatedAt   int64           `json:"createdAt"`
	UpdatedAt   int64           `json:"updatedAt"`
}

func (e *Emulator) toJSON(t token) tokenJSON {
	j := tokenJSON{ID: e.tokenID(t.seq), CreatedAt: t.createdAt, UpdatedAt: t.updatedAt}
	if f := t.fields; f != nil {
		j.Name, j.Description, j.Meta = f.name, f.description, f.meta
	}
	return j
}

// ServeHTTP answers the four token endpoints under /v1 and /api/v1 (the Node
// SDK keeps /api for any host but api.chatbotkit.com). Checks run in the
// order route, method, authentication, request, as a framework router
// would: an unknown path is 404 and a wrong method 405 even without a
// secret.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := parseRoute(r.URL.EscapedPath())
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Not found")
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Method not allowed: use "+rt.method)
		return
	}
	if !e.authenticated(r) {
		writeError(w, http.StatusUnauthorized, "NOT_AUTHENTICATED", "Not authenticated: a valid Authorization: Bearer secret is required")
		return
	}
	switch rt.action {
	case "list":
		e.list(w, r, rt.userID)
	case "create":
		e.create(w, r, rt.userID)
	case "update":
		e.update(w, r, rt.userID, rt.tokenID)
	case "delete":
		e.delete(w, r, rt.userID, rt.tokenID)
	}
}

type route struct {
	method, action, userID, tokenID string
}

// parseRoute splits the escaped path itself and unescapes each segment, so
// that an id containing %2F stays one segment instead of becoming two.
func parseRoute(escaped string) (route, bool) {
	rest, ok := strings.CutPrefix(escaped, "/v1/partner/user/")
	if !ok {
		rest, ok = strings.CutPrefix(escaped, "/api/v1/partner/user/")
	}
	if !ok {
		return route{}, false
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return route{}, false
		}
		segs[i] = u
	}
	// The fixed words are compared unescaped, as any router would.
	switch {
	case len(segs) == 3 && segs[1] == "token" && segs[2] == "list":
		return route{method: http.MethodGet, action: "list", userID: segs[0]}, true
	case len(segs) == 3 && segs[1] == "token" && segs[2] == "create":
		return route{method: http.MethodPost, action: "create", userID: segs[0]}, true
	case len(segs) == 4 && segs[1] == "token" && (segs[3] == "update" || segs[3] == "delete"):
		return route{method: http.MethodPost, action: segs[3], userID: segs[0], tokenID: segs[2]}, true
	}
	return route{}, false
}

// authenticated compares hashes in constant time, so neither the secret's
// content nor its length leaks through timing.
func (e *Emulator) authenticated(r *http.Request) bool {
	scheme, value, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(value)))
	return subtle.ConstantTimeCompare(got[:], e.secretHash[:]) == 1
}

func (e *Emulator) list(w http.ResponseWriter, r *http.Request, userID string) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Malformed query string")
		return
	}
	desc := true
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		desc = false
	default:
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", `order must be "asc" or "desc"`)
		return
	}
	take := defaultTake
	if s := q.Get("take"); s != "" {
		n, err := strconv.Atoi(s)
		switch {
		case errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(s, "-"):
			n = maxTake
		case err != nil || n <= 0:
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "take must be a positive integer")
			return
		}
		take = min(n, maxTake)
	}
	cursor := q.Get("cursor")
	pos := uint64(0)
	if desc {
		pos = math.MaxUint64
	}
	if cursor != "" {
		var ok bool
		if pos, ok = decodeCursor(cursor); !ok {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid cursor")
			return
		}
	}
	if acceptsJSONL(r.Header.Values("Accept")) {
		e.stream(w, r, userID, pos, desc)
		return
	}

	e.mu.RLock()
	page := after(e.users[userID], pos, desc, take, math.MaxUint64)
	e.mu.RUnlock()

	items := make([]tokenJSON, len(page))
	for i, t := range page {
		items[i] = e.toJSON(t)
	}
	if len(page) > 0 {
		cursor = encodeCursor(page[len(page)-1].seq)
	}
	writeJSON(w, http.StatusOK, struct {
		Items  []tokenJSON `json:"items"`
		Cursor string      `json:"cursor"`
	}{items, cursor})
}

// acceptsJSONL reports whether application/jsonl is among the Accept values.
func acceptsJSONL(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "application/jsonl") {
				return true
			}
		}
	}
	return false
}

// stream writes every token after pos as JSONL. Memory stays bounded: each
// round holds the read lock only to copy the next batch after the last token
// sent, so a concurrent delete or insert never invalidates the position.
func (e *Emulator) stream(w http.ResponseWriter, r *http.Request, userID string, pos uint64, desc bool) {
	e.mu.RLock()
	limit := e.seq
	e.mu.RUnlock()

	w.Header().Set("Content-Type", "application/jsonl")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // Encode ends each value with "\n"
	for r.Context().Err() == nil {
		e.mu.RLock()
		batch := after(e.users[userID], pos, desc, streamBatch, limit)
		e.mu.RUnlock()
		if len(batch) == 0 {
			return
		}
		buf.Reset()
		for _, t := range batch {
			_ = enc.Encode(struct {
				Type string    `json:"type"`
				Data tokenJSON `json:"data"`
			}{"item", e.toJSON(t)})
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		pos = batch[len(batch)-1].seq
	}
}
