package chatbotkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// A listing is read as one stream: one GET with Accept: application/jsonl
// and no take, answered with one JSON line per token, the way the official
// Node SDK reads it. It costs one upstream round trip however many tokens
// the user has, where pages of at most MaxTake cost one round trip each.
//
// Lines carry no upstream cursor, so the only places the upstream can be
// asked to read from again are the cursor the stream was opened with and
// the cursors of JSON pages. A Position is such a place plus, when the
// token sits somewhere after it, that token's id: reading from the cursor
// and passing over every token through that id continues exactly after it
// (costing transfer, not round trips). That is how a stream cut mid-way is
// resumed here, and how a caller's own cursor is resumed (see OpenList).

// Position is a place in a listing that can be read from again.
type Position struct {
	// Cursor is an upstream cursor ("" for the start of the listing).
	Cursor string
	// After, when set, is the id of a token at or after Cursor: the
	// position is right after that token.
	After string
}

// StreamOptions configure a Lister.
type StreamOptions struct {
	Order Order
	// From is where the listing starts: its first token is the one right
	// after From.
	From Position
	// PageSize is the take of page requests, when the upstream answers with
	// JSON pages instead of a stream (0: 100; at most MaxTake). It is never
	// sent on the stream request.
	PageSize int
	// Limit, when above 0, is how many tokens the caller will take at
	// most; page requests ask for no more than remain.
	Limit int
	// BeforeRequest, if set, runs before every upstream request the Lister
	// sends (opening the stream, each resume, each page, each retry) and is
	// waited on; an error from it ends the listing with that error.
	BeforeRequest func(ctx context.Context) error
}

// ErrCursorStale: the token a listing was to resume after is no longer in
// the listing (deleted, or a position the upstream does not hold), so
// where to resume cannot be known exactly.
var ErrCursorStale = errors.New("chatbotkit: the position to resume from is no longer in the listing")

const (
	// defaultStreamPageSize is the take of page requests when
	// StreamOptions.PageSize is 0.
	defaultStreamPageSize = 100
	// streamIdleTimeout bounds how long a Lister waits on the upstream
	// (for an answer's headers, or for the next bytes of a body) before it
	// takes the stream as cut. Time the caller spends not asking for
	// tokens does not count: the upstream is not read then.
	streamIdleTimeout = 30 * time.Second
	// lineBufferBytes is what a Lister reads ahead of the line it decodes:
	// with the socket buffers, all it holds of a stream that its caller is
	// not reading (bounded buffering). Longer lines are gathered up to the
	// body cap.
	lineBufferBytes = 32 << 10
	// jsonlType is the media type of the streamed listing.
	jsonlType = "application/jsonl"
)

type listerState int

const (
	stateOpen      listerState = iota // the stream request is to be sent
	stateLines                        // reading lines of a stream
	statePage                         // passing on the items of a page
	stateFetchPage                    // the next page is to be requested
	stateDone
)

// Lister reads one listing, token by token, only as fast as its caller asks
// (Next). It is not safe for concurrent use. Close it.
type Lister struct {
	c      *Client
	ctx    context.Context
	cred   secret.Value
	userID string
	opts   StreamOptions

	state listerState
	err   error // sticky: the listing failed

	streamReq *request // the stream request, the same on every resume
	pageReq   *request // the page request being sent, the same on a retry
	pageTake  int      // the take pageReq asks for
	// cur is the request sent last; sendsBase its sends when it last
	// delivered a token (or when it was made).
	cur       *request
	sendsBase int32

	// The stream being read.
	body   io.ReadCloser
	cancel context.CancelFunc // the current request's
	// idle cancels the current request when the upstream keeps quiet for
	// streamIdleTimeout, and sets stale.
	idle   *time.Timer
	stale  *atomic.Bool
	br     *bufio.Reader
	long   []byte // a line longer than br's buffer
	framed bool   // the body's end is framed (see lineEnd)

	// The page being passed on.
	items      []Token
	next       int
	pageFrom   string // the cursor the page was asked with
	pageCursor string // the page's own cursor
	lastPage   bool

	// skip is the id of a token to pass over, with every token before it,
	// before any is yielded ("" when none).
	skip string
	// lastID is the id of the last token yielded.
	lastID string
	// yielded counts the tokens yielded; failures the failed requests and
	// cuts since the last one.
	yielded, failures int
}

// OpenList prepares to read userID's listing from opts.From on. It checks
// the arguments and sends nothing: the first Next sends the stream request.
func (c *Client) OpenList(ctx context.Context, cred secret.Value, userID string, opts StreamOptions) (*Lister, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = defaultStreamPageSize
	}
	opts.PageSize = min(opts.PageSize, MaxTake)
	r, err := c.listRequest("list", cred, userID, ListOptions{Cursor: opts.From.Cursor, Order: opts.Order})
	if err != nil {
		return nil, err
	}
	r.accept = jsonlType
	l := &Lister{c: c, ctx: ctx, cred: cred, userID: userID, opts: opts, streamReq: r, skip: opts.From.After}
	return l, nil
}

// Next returns the next token and the Position right after it. It returns
// io.EOF at the end of a complete listing, and ErrCursorStale (before any
// token) when the listing does not hold StreamOptions.From.After, or (after
// some) when it no longer holds the last token yielded when a cut stream
// was resumed. Cuts, resets and transient answers are retried with backoff:
// at most the client's attempts in a row, the count starting again with
// every token a resumed stream delivers.
func (l *Lister) Next() (Token, Position, error) {
	for l.err == nil {
		t, pos, err := l.read()
		switch {
		case err == nil:
			if l.skip != "" {
				if t.ID == l.skip {
					l.skip = ""
				}
				continue
			}
			l.failures = 0
			if l.cur != nil {
				l.sendsBase = l.cur.sends.Load()
			}
			l.yielded++
			l.lastID = t.ID
			return t, pos, nil
		case err == io.EOF:
			if l.skip != "" {
				l.err = fmt.Errorf("%w: token %q was not found", ErrCursorStale, l.skip)
				break
			}
			return Token{}, Position{}, io.EOF
		default:
			if werr := l.retryWait(err); werr != nil {
				l.err = werr
			}
		}
	}
	l.Close()
	return Token{}, Position{}, l.err
}

// Close ends the listing and releases its connection: a stream not read to
// its end is closed, which tells the upstream to stop sending.
func (l *Lister) Close() {
	l.closeBody()
	l.state = stateDone
	if l.err == nil {
		l.err = io.EOF
	}
}

// read returns the next token the upstream lists, skipped or not.
func (l *Lister) read() (Token, Position, error) {
	for {
		switch l.state {
		case stateOpen, stateFetchPage:
			if err := l.request(); err != nil {
				return Token{}, Position{}, err
			}
		case stateLines:
			t, err := l.readLine()
			if err == nil {
				return t, Position{Cursor: l.opts.From.Cursor, After: t.ID}, nil
			}
			l.closeBody()
			if err == io.EOF {
				l.state = stateDone
				continue
			}
			// A cut: read the stream again from where it was opened and
			// pass over what was already yielded.
			l.state = stateOpen
			if l.lastID != "" {
				l.skip = l.lastID
			}
			return Token{}, Position{}, err
		case statePage:
			if l.next < len(l.items) {
				t := l.items[l.next]
				l.next++
				pos := Position{Cursor: l.pageFrom, After: t.ID}
				if l.next == len(l.items) && l.pageCursor != "" {
					pos = Position{Cursor: l.pageCursor}
				}
				return t, pos, nil
			}
			l.state = stateFetchPage
			if l.lastPage {
				l.state = stateDone
			}
		default:
			return Token{}, Position{}, io.EOF
		}
	}
}

// request sends the stream request (stateOpen) or the next page request
// (stateFetchPage) and moves to the state its answer calls for.
func (l *Lister) request() error {
	r, take := l.streamReq, 0
	if l.state == stateFetchPage {
		if l.pageReq == nil {
			l.pageTake = l.opts.PageSize
			if l.opts.Limit > 0 {
				l.pageTake = min(l.pageTake, l.opts.Limit-l.yielded)
			}
			if l.pageTake <= 0 {
				l.state = stateDone
				return nil
			}
			var err error
			l.pageReq, err = l.c.listRequest("list", l.cred, l.userID, ListOptions{Cursor: l.pageCursor, Order: l.opts.Order, Take: l.pageTake})
			if err != nil {
				return err
			}
			l.sendsBase = 0
		}
		r, take = l.pageReq, l.pageTake
	}
	if l.cur != r {
		if r == l.streamReq {
			l.sendsBase = r.sends.Load()
		}
		l.cur = r
	}
	if l.opts.BeforeRequest != nil {
		if err := l.opts.BeforeRequest(l.ctx); err != nil {
			return fmt.Errorf("chatbotkit: list: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(l.ctx)
	l.cancel = cancel
	stale := new(atomic.Bool)
	l.stale = stale
	l.idle = time.AfterFunc(streamIdleTimeout, func() {
		stale.Store(true)
		cancel()
	})
	resp, err := l.c.send(ctx, r)
	l.idle.Stop()
	if err != nil {
		l.closeBody()
		return l.quietErr(err)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if l.state == stateFetchPage || mt == "application/json" {
		return l.readPage(ctx, r, resp, take)
	}
	l.body = &idleReader{r: resp.Body, l: l}
	if l.br == nil {
		l.br = bufio.NewReaderSize(l.body, lineBufferBytes)
	} else {
		l.br.Reset(l.body)
	}
	// Go's client reports a short Content-Length body, or a chunked one
	// without its terminator, as io.ErrUnexpectedEOF, and an HTTP/2 stream
	// reset as an error; a plain EOF means the end was framed, except for a
	// body that ends when the connection closes (HTTP/1 with neither), which
	// no amount of reading can tell from a cut. A body the transport
	// decompressed has gzip's own end check.
	l.framed = resp.ProtoMajor >= 2 || resp.ContentLength >= 0 ||
		slices.Contains(resp.TransferEncoding, "chunked") || resp.Uncompressed
	l.state = stateLines
	return nil
}

// readPage reads a JSON page answered to r (asked with take; 0 for the
// stream request, which then allows MaxTake items).
func (l *Lister) readPage(ctx context.Context, r *request, resp *http.Response, take int) error {
	l.body = &idleReader{r: resp.Body, l: l}
	resp.Body = l.body
	b, err := l.c.readBody(ctx, r, resp)
	l.closeBody()
	if err != nil {
		return l.quietErr(err)
	}
	page, err := decodePage(b, take)
	if err != nil {
		return fmt.Errorf("%w: list: %v", ErrMalformedResponse, err)
	}
	from := l.opts.From.Cursor
	if l.state == stateFetchPage {
		from = l.pageCursor
	}
	if from != "" && page.Cursor == from && len(page.Items) > 0 {
		// A cursor that does not move would repeat this page forever.
		return fmt.Errorf("%w: list: a page of tokens came back with the cursor it was asked for", ErrMalformedResponse)
	}
	l.pageReq = nil
	l.items, l.next = page.Items, 0
	l.pageFrom, l.pageCursor = from, page.Cursor
	l.lastPage = len(page.Items) == 0 || page.Cursor == ""
	l.state = statePage
	return nil
}

// readLine returns the token of the next non-empty line, io.EOF at a
// complete end, or why the stream cannot go on.
func (l *Lister) readLine() (Token, error) {
	for {
		line, err := l.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			line, err = l.readLongLine(line)
		}
		switch {
		case err == io.EOF && len(line) > 0:
			return Token{}, &unavailableError{op: "list", cause: errors.New("the stream ended inside a line")}
		case err == io.EOF && !l.framed:
			return Token{}, &unavailableError{op: "list", cause: errors.New("the stream ended without framing (the connection closed)")}
		case err == io.EOF:
			return Token{}, io.EOF
		case err != nil:
			return Token{}, l.quietErr(err)
		}
		if int64(len(line)) > l.c.maxBody {
			return Token{}, fmt.Errorf("%w: list: a line exceeds the %d-byte cap", ErrResponseTooLarge, l.c.maxBody)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var w wireToken
		if err := decodeLine(line, &w); err != nil {
			return Token{}, fmt.Errorf("%w: list: line: %v", ErrMalformedResponse, err)
		}
		t, err := w.token()
		if err != nil {
			return Token{}, fmt.Errorf("%w: list: line: %v", ErrMalformedResponse, err)
		}
		return t, nil
	}
}

// readLongLine gathers a line longer than the read buffer, of which first
// has been read, up to the body cap: the cap applies to each line.
func (l *Lister) readLongLine(first []byte) ([]byte, error) {
	l.long = append(l.long[:0], first...)
	for {
		part, err := l.br.ReadSlice('\n')
		if int64(len(l.long)+len(part)) > l.c.maxBody {
			l.long = nil
			return nil, fmt.Errorf("%w: list: a line exceeds the %d-byte cap", ErrResponseTooLarge, l.c.maxBody)
		}
		l.long = append(l.long, part...)
		if err != bufio.ErrBufferFull {
			line := l.long
			if cap(l.long) > 4*lineBufferBytes {
				l.long = nil // do not hold a long line's room for the rest of the stream
			}
			return line, err
		}
	}
}

// retryWait decides whether a failed request or a cut stream is tried
// again, and waits the backoff if so; otherwise it returns the error to
// end the listing with.
func (l *Lister) retryWait(err error) error {
	l.failures++
	if l.failures >= l.c.maxAttempts {
		return err
	}
	// net/http sends a GET again by itself when a reused connection fails
	// before any answer: every send counts.
	if l.cur != nil {
		l.failures = max(l.failures, int(l.cur.sends.Load()-l.sendsBase))
		if l.failures >= l.c.maxAttempts {
			return err
		}
	}
	ok, retryAfter := retryable(err, true)
	// A pause as long as the upstream may keep quiet is not waited for:
	// the caller gets the answer (and its Retry-After) now.
	if !ok || retryAfter >= min(maxRetryAfterWait, streamIdleTimeout) {
		return err
	}
	wait := max(l.c.backoff(l.failures), retryAfter)
	if deadline, ok := l.ctx.Deadline(); ok && time.Now().Add(wait).After(deadline) {
		return err
	}
	if serr := l.c.sleep(l.ctx, wait); serr != nil {
		return fmt.Errorf("chatbotkit: %w (while waiting to retry after: %v)", serr, err)
	}
	return nil
}

// quietErr turns the error of a request whose upstream went quiet (the
// idle timer cancelled it while the caller's context is live) into the cut
// it is, rather than a cancellation the caller never made.
func (l *Lister) quietErr(err error) error {
	if l.ctx.Err() != nil {
		return fmt.Errorf("chatbotkit: list: %w", l.ctx.Err())
	}
	if l.stale != nil && l.stale.Load() {
		return &unavailableError{op: "list", cause: fmt.Errorf("no data from the upstream for %s", streamIdleTimeout)}
	}
	var ue *unavailableError
	if errors.As(err, &ue) || errors.Is(err, ErrMalformedResponse) || errors.Is(err, ErrResponseTooLarge) {
		return err
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return err
	}
	return l.c.bodyError(l.ctx, "list", err)
}

func (l *Lister) closeBody() {
	if l.body != nil {
		_ = l.body.Close()
		l.body = nil
	}
	if l.cancel != nil {
		l.cancel()
		l.cancel = nil
	}
	if l.idle != nil {
		l.idle.Stop()
	}
}

// idleReader arms the Lister's idle timer only while a read waits on the
// upstream.
type idleReader struct {
	r io.ReadCloser
	l *Lister
}

func (b *idleReader) Read(p []byte) (int, error) {
	b.l.idle.Reset(streamIdleTimeout)
	n, err := b.r.Read(p)
	b.l.idle.Stop()
	return n, err
}

func (b *idleReader) Close() error { return b.r.Close() }
