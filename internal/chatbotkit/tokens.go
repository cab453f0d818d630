package chatbotkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// Order is the order of a listing. The upstream's default is newest first.
type Order string

const (
	OrderDefault Order = ""
	OrderAsc     Order = "asc"
	OrderDesc    Order = "desc"
)

// ListOptions are a listing's query parameters; zero values are not sent.
type ListOptions struct {
	Cursor string // opaque: resume after this position
	Order  Order
	Take   int // page size; 0 lets the upstream choose
}

// Token is one token as listed. Its secret value is never listed.
type Token struct {
	ID          string
	Name        string
	Description string
	// Meta is the upstream's free-form JSON, byte for byte; nil when absent
	// or null.
	Meta      json.RawMessage
	CreatedAt time.Time // UTC; zero when the upstream sent none
	UpdatedAt time.Time // UTC; zero when the upstream sent none
}

// Page is one JSON page of a listing.
type Page struct {
	Items  []Token
	Cursor string // pass back as ListOptions.Cursor for the next page
}

// TokenInput is the body of a create or an update. A nil field is not sent,
// which on update leaves it as it is.
type TokenInput struct {
	Name        *string
	Description *string
	Config      json.RawMessage
	Meta        json.RawMessage
}

// Created is the answer to a create. Token is the new token's secret value,
// returned once.
type Created struct {
	ID        string
	Token     secret.Value
	CreatedAt time.Time
}

// ListPage fetches one JSON page. It is retried on no connection, reset, a
// body cut short, 429, 502, 503 and 504.
func (c *Client) ListPage(ctx context.Context, cred secret.Value, userID string, opts ListOptions) (*Page, error) {
	r, err := c.listRequest("list", cred, userID, opts)
	if err != nil {
		return nil, err
	}
	var page *Page
	err = c.retry(ctx, r, true, func() error {
		resp, err := c.send(ctx, r)
		if err != nil {
			return err
		}
		b, err := c.readBody(ctx, r, resp)
		if err != nil {
			return err
		}
		p, err := decodePage(b, opts.Take)
		if err != nil {
			return fmt.Errorf("%w: list: %v", ErrMalformedResponse, err)
		}
		page = p
		return nil
	})
	return page, err
}

// maxItemsHint bounds the items decodePage makes room for up front.
const maxItemsHint = 256

// MaxTake is the largest page a listing asks for (ChatBotKit's own
// maximum). It also bounds the items of a page asked for with take 0.
const MaxTake = 1000

// errTooManyItems: a page with more items than asked for. Trimming it
// would pass on a page the upstream did not mean, and decoding it whole
// would let the upstream size cbkgate's memory (the issue measured 650 MB
// for one page of a million small items, well under the body cap).
var errTooManyItems = errors.New("more items than the take asked for")

// decodePage decodes the body of one JSON page. take is the page size asked
// for (0: the upstream's default): the items are decoded into a slice made
// that size, so that decoding a full page never regrows it. A page with
// more items than take (MaxTake for 0) is refused before its items are
// decoded. scanPage takes pages of the usual shape, encoding/json the rest.
func decodePage(b []byte, take int) (*Page, error) {
	limit := take
	if limit <= 0 {
		limit = MaxTake
	}
	hint := take
	if hint <= 0 || hint > maxItemsHint {
		hint = 100
	}
	items, cursor, ok, tooMany := scanPage(b, make([]wireToken, 0, hint), limit)
	if tooMany {
		return nil, errTooManyItems
	}
	if !ok {
		if countItems(b, limit) > limit {
			return nil, errTooManyItems
		}
		var err error
		if items, cursor, err = unmarshalPage(b, make([]wireToken, 0, hint)); err != nil {
			return nil, err
		}
	}
	return newPage(items, cursor)
}

// countItems returns how many elements the page's "items" array has (the
// most of any key encoding/json would take for it, in any case or
// spelling), counting no further than limit+1. It decodes no item, and
// holds no more than one element and one value of another key at a time.
func countItems(b []byte, limit int) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0 // not an object: unmarshalPage says what is wrong
	}
	most := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return most
		}
		key, _ := t.(string)
		if !strings.EqualFold(key, "items") {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return most
			}
			continue
		}
		t, err = dec.Token()
		if err != nil {
			return most
		}
		switch t {
		case json.Delim('['):
			n := 0
			for dec.More() && n <= limit {
				var skip json.RawMessage
				if dec.Decode(&skip) != nil {
					return max(most, n)
				}
				n++
			}
			if n > limit {
				return n
			}
			most = max(most, n)
			if _, err := dec.Token(); err != nil { // the closing ]
				return most
			}
		case json.Delim('{'):
			// Not an array: skip the object, unmarshalPage refuses it.
			for depth := 1; depth > 0; {
				t, err := dec.Token()
				if err != nil {
					return most
				}
				switch t {
				case json.Delim('{'), json.Delim('['):
					depth++
				case json.Delim('}'), json.Delim(']'):
					depth--
				}
			}
		}
	}
	return most
}

func newPage(items []wireToken, cursor string) (*Page, error) {
	p := &Page{Items: make([]Token, 0, len(items)), Cursor: cursor}
	for i := range items {
		t, err := items[i].token()
		if err != nil {
			return nil, fmt.Errorf("item %d: %v", i, err)
		}
		p.Items = append(p.Items, t)
	}
	return p, nil
}

// unmarshalPage decodes a page with encoding/json, into items.
func unmarshalPage(b []byte, items []wireToken) ([]wireToken, string, error) {
	wire := struct {
		Items  *[]wireToken `json:"items"`
		Cursor string       `json:"cursor"`
	}{Items: &items}
	if err := json.Unmarshal(b, &wire); err != nil {
		return nil, "", err
	}
	if wire.Items == nil {
		return nil, "", errors.New("no items") // "items": null
	}
	if len(*wire.Items) == 0 {
		// The slice made above hides whether "items" was there at all.
		// An empty page is rare and small: look again.
		var again struct {
			Items *[]json.RawMessage `json:"items"`
		}
		if json.Unmarshal(b, &again) != nil || again.Items == nil {
			return nil, "", errors.New("no items")
		}
	}
	return *wire.Items, wire.Cursor, nil
}

func (c *Client) listRequest(op string, cred secret.Value, userID string, opts ListOptions) (*request, error) {
	switch opts.Order {
	case OrderDefault, OrderAsc, OrderDesc:
	default:
		return nil, fmt.Errorf("%w: %s: unknown order %q", ErrInvalidArgument, op, opts.Order)
	}
	if opts.Take < 0 || opts.Take > MaxTake {
		return nil, fmt.Errorf("%w: %s: take must be 0 to %d", ErrInvalidArgument, op, MaxTake)
	}
	r, err := c.newRequest(op, http.MethodGet, cred, "list", userID)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.Order != OrderDefault {
		q.Set("order", string(opts.Order))
	}
	if opts.Take > 0 {
		q.Set("take", strconv.Itoa(opts.Take))
	}
	if len(q) > 0 {
		r.url += "?" + q.Encode()
	}
	return r, nil
}

// Create creates a token. It is sent again only if the request provably
// never reached the upstream; an answer of any kind, or a connection lost
// after the request went out, is returned as it is, so that a retry can
// never mint a second token.
func (c *Client) Create(ctx context.Context, cred secret.Value, userID string, in TokenInput) (*Created, error) {
	r, err := c.newRequest("create", http.MethodPost, cred, "create", userID)
	if err != nil {
		return nil, err
	}
	if r.body, err = in.marshal(); err != nil {
		return nil, err
	}
	var out *Created
	err = c.retry(ctx, r, false, func() error {
		resp, err := c.send(ctx, r)
		if err != nil {
			return err
		}
		var wire struct {
			ID        string `json:"id"`
			Token     string `json:"token"`
			CreatedAt msTime `json:"createdAt"`
		}
		if err := c.readJSON(ctx, r, resp, &wire, true); err != nil {
			return err
		}
		if wire.ID == "" || wire.Token == "" {
			return fmt.Errorf("%w: create: id or token missing", ErrMalformedResponse)
		}
		out = &Created{ID: wire.ID, Token: secret.Value(wire.Token), CreatedAt: wire.CreatedAt.t}
		return nil
	})
	return out, err
}

// Update changes the fields of in that are not nil and returns the token's
// id. Retried like Create.
func (c *Client) Update(ctx context.Context, cred secret.Value, userID, tokenID string, in TokenInput) (string, error) {
	r, err := c.newRequest("update", http.MethodPost, cred, "update", userID, tokenID)
	if err != nil {
		return "", err
	}
	if r.body, err = in.marshal(); err != nil {
		return "", err
	}
	return c.writeForID(ctx, r)
}

// Delete deletes a token and returns its id. Retried like Create.
func (c *Client) Delete(ctx context.Context, cred secret.Value, userID, tokenID string) (string, error) {
	r, err := c.newRequest("delete", http.MethodPost, cred, "delete", userID, tokenID)
	if err != nil {
		return "", err
	}
	r.body = []byte("{}")
	return c.writeForID(ctx, r)
}

// writeForID sends a write whose answer is {"id": ...}.
func (c *Client) writeForID(ctx context.Context, r *request) (string, error) {
	var id string
	err := c.retry(ctx, r, false, func() error {
		resp, err := c.send(ctx, r)
		if err != nil {
			return err
		}
		var wire struct {
			ID string `json:"id"`
		}
		if err := c.readJSON(ctx, r, resp, &wire, false); err != nil {
			return err
		}
		if wire.ID == "" {
			return fmt.Errorf("%w: %s: id missing", ErrMalformedResponse, r.op)
		}
		id = wire.ID
		return nil
	})
	return id, err
}

// marshal encodes the fields that are set. The encoder checks that Config
// and Meta are valid JSON and compacts them; their numbers stay as written.
func (in TokenInput) marshal() ([]byte, error) {
	wire := struct {
		Name        *string         `json:"name,omitempty"`
		Description *string         `json:"description,omitempty"`
		Config      json.RawMessage `json:"config,omitempty"`
		Meta        json.RawMessage `json:"meta,omitempty"`
	}{in.Name, in.Description, in.Config, in.Meta}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wire); err != nil {
		return nil, fmt.Errorf("%w: config or meta is not valid JSON: %v", ErrInvalidArgument, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// wireToken is a token as the upstream sends it, in a page or a stream line.
type wireToken struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Meta        json.RawMessage `json:"meta"`
	CreatedAt   msTime          `json:"createdAt"`
	UpdatedAt   msTime          `json:"updatedAt"`
}

func (w *wireToken) token() (Token, error) {
	if w.ID == "" {
		return Token{}, errors.New("token without id")
	}
	meta := w.Meta
	if string(meta) == "null" {
		meta = nil
	}
	return Token{
		ID:          w.ID,
		Name:        w.Name,
		Description: w.Description,
		Meta:        meta,
		CreatedAt:   w.CreatedAt.t,
		UpdatedAt:   w.UpdatedAt.t,
	}, nil
}

// msTime is a JSON number of milliseconds since the Unix epoch, integral or
// not. null leaves it zero.
type msTime struct{ t time.Time }

// maxFloatMillis keeps a fractional timestamp within what float64 holds
// exactly and int64 can take.
const maxFloatMillis = 1 << 53

// The range of a google.protobuf.Timestamp (years 1 to 9999) in
// milliseconds. A time outside it cannot be passed on (protojson refuses to
// write it, so the HTTP answer would break off), so it makes the answer
// malformed, the same over gRPC and HTTP.
const (
	minTimestampMillis = -62135596800000
	maxTimestampMillis = 253402300799999
)

var errTimeOutOfRange = errors.New("a timestamp is outside the years 1 to 9999")

func (m *msTime) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < minTimestampMillis || ms > maxTimestampMillis {
			return errTimeOutOfRange
		}
		m.t = time.UnixMilli(ms).UTC()
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxFloatMillis {
		return errors.New("a timestamp is not a number of milliseconds")
	}
	if f < minTimestampMillis || f >= maxTimestampMillis+1 {
		return errTimeOutOfRange
	}
	whole := math.Floor(f)
	frac := time.Duration(math.Round((f - whole) * float64(time.Millisecond)))
	m.t = time.UnixMilli(int64(whole)).Add(frac).UTC()
	return nil
}
