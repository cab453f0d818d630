// Package service implements cbkgate.token.v1.TokenService on top of the
// ChatBotKit REST client: it validates requests before anything goes
// upstream, turns ChatBotKit's answers into proto messages, and its errors
// into the gRPC statuses of the contract.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	"github.com/cbkgate/cbkgate/internal/state"
)

// maxPageSize is the largest upstream page a List asks for when the
// upstream answers with pages; a larger page_size is clamped to it. With the
// client's refusal of pages longer than asked for, a List holds at most one
// page of this many tokens.
const maxPageSize = chatbotkit.MaxTake

// upstreamTimeout bounds one upstream request (a unary call; a listing's
// stream has its own bound on silence, in the client) whose caller set no deadline, so a ChatBotKit that never
// answers cannot hold a call, and its goroutine, forever. Callers with a
// deadline get exactly their deadline.
const upstreamTimeout = 30 * time.Second

// upstreamContext applies upstreamTimeout when ctx has no deadline.
func upstreamContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, upstreamTimeout)
}

// Service is the TokenService implementation. It holds no state of its own
// beyond the shared REST client, so one Service serves every call.
type Service struct {
	tokenv1.UnimplementedTokenServiceServer
	client *chatbotkit.Client
	// callers is --caller-rate (nil: no limit).
	callers state.Limiter
	// records keeps the outcomes of Creates with a request_id.
	records *state.Records
	// onReplay, when set, is told of each Create answered from its record.
	onReplay func()
	// audit, when set, writes the audit line of a write the service makes
	// on its own (a reconciliation's deletes).
	audit func(ctx context.Context, action, userID, tokenID string, code codes.Code)
	// metaOmitted, when set, is told of each token List sends without its
	// meta (see setToken).
	metaOmitted func(ctx context.Context, userID, tokenID string)
	// lists counts each caller's running Lists.
	lists listSlots
	// tokenRead, when set (by tests), runs on a List's reading goroutine
	// before each token is read.
	tokenRead func()
}

// Option configures a Service.
type Option func(*Service)

// WithCallerRate limits the upstream requests of each caller identity
// (auth.Caller): a Create, Update or Delete over the rate is refused with
// RESOURCE_EXHAUSTED (RATE_LIMITED, RetryInfo) before it goes upstream;
// a List waits before each upstream request instead, and so does an
// Update that sets meta before its requests after the first (keepMarkers).
// nil means no limit.
func WithCallerRate(l state.Limiter) Option {
	return func(s *Service) { s.callers = l }
}

// WithRecords keeps the records of idempotent Creates (request_id) in r.
// Without it they are kept in the process, under a key of its own.
func WithRecords(r *state.Records) Option {
	return func(s *Service) { s.records = r }
}

// WithReplayed has f told of each Create answered from its record.
func WithReplayed(f func()) Option {
	return func(s *Service) { s.onReplay = f }
}

// WithAudit has f write the audit line of each write the service makes on
// its own behalf: the deletes of a reconciliation (token.delete).
func WithAudit(f func(ctx context.Context, action, userID, tokenID string, code codes.Code)) Option {
	return func(s *Service) { s.audit = f }
}

// WithMetaOmitted has f told of each token List sends with its meta left
// out (meta_omitted: ChatBotKit holds it nested deeper than cbkgate passes
// on), for the log and the metrics.
func WithMetaOmitted(f func(ctx context.Context, userID, tokenID string)) Option {
	return func(s *Service) { s.metaOmitted = f }
}

// New returns a Service that calls ChatBotKit through client.
func New(client *chatbotkit.Client, opts ...Option) *Service {
	s := &Service{client: client}
	for _, o := range opts {
		o(s)
	}
	if s.records == nil {
		s.records, _ = state.NewRecords(state.NewMemory(0, nil), state.RandomKey())
	}
	return s
}

// admit takes one upstream request from the caller's rate, or returns the
// RATE_LIMITED error that refuses the call.
func (s *Service) admit(ctx context.Context) error {
	if s.callers == nil {
		return nil
	}
	ok, retryAfter := s.callers.Allow(ctx, auth.Caller(ctx))
	if ok {
		return nil
	}
	return apierr.New(codes.ResourceExhausted, apierr.ReasonRateLimited,
		"this caller is over its rate of upstream requests (--caller-rate); retry later",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
}

// pace takes one upstream request from the caller's rate, waiting for it
// as long as ctx allows: for the requests of a call that is already
// under way (a List's, a reconciliation's after its first).
func (s *Service) pace(ctx context.Context) error {
	if s.callers == nil {
		return nil
	}
	return s.callers.Wait(ctx, auth.Caller(ctx))
}

// afterAdmitted is a Lister's BeforeRequest for a call whose first
// upstream request its caller's rate has admitted already (admit): that
// one goes at once, and every later one (a retry, a resumed stream, a next
// page) waits for the rate. nil without --caller-rate.
func (s *Service) afterAdmitted() func(context.Context) error {
	if s.callers == nil {
		return nil
	}
	var admitted atomic.Bool
	return func(ctx context.Context) error {
		if admitted.CompareAndSwap(false, true) {
			return nil
		}
		return s.pace(ctx)
	}
}

// List streams every token of a user from the request's cursor on, read
// from ChatBotKit as one stream (chatbotkit.Lister): one upstream round trip
// however long the listing, read only as fast as the caller takes tokens,
// so memory stays bounded. Every token carries the cursor that resumes
// right after it (cursor.go).
func (s *Service) List(req *tokenv1.ListRequest, stream grpc.ServerStreamingServer[tokenv1.ListResponse]) error {
	if err := validateList(req); err != nil {
		return err
	}
	order := upstreamOrder(req.GetOrder())
	from, err := decodeCursor(req.GetCursor(), order)
	if err != nil {
		return err
	}
	callCtx := stream.Context()
	caller := auth.Caller(callCtx)
	release, err := s.lists.acquire(caller)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(callCtx)
	defer cancel()

	opts := chatbotkit.StreamOptions{
		Order:    order,
		From:     from,
		PageSize: min(int(req.GetPageSize()), maxPageSize),
		Limit:    int(req.GetLimit()),
	}
	if s.callers != nil {
		// Every upstream request (the stream, each resume, each page, each
		// retry) counts once: a List is paced by the caller's rate, never
		// failed by it.
		opts.BeforeRequest = s.pace
	}
	lister, err := s.client.OpenList(ctx, auth.UpstreamSecret(callCtx), req.GetUserId(), opts)
	if err != nil {
		return s.status(callCtx, err)
	}
	items := make(chan listItem, listAhead)
	done := make(chan struct{})
	go s.readList(ctx, lister, order, int(req.GetLimit()), items, done)
	// However List ends, the reader stops (closing the upstream stream)
	// before it returns.
	defer func() { cancel(); <-done }()
	for it := range items {
		if it.err != nil {
			return it.err
		}
		if it.resp.Token.GetMetaOmitted() && s.metaOmitted != nil {
			s.metaOmitted(callCtx, req.GetUserId(), it.resp.Token.GetId())
		}
		if err := stream.Send(it.resp); err != nil {
			// The caller is gone or its deadline passed; the stream's
			// status is already decided by gRPC.
			return err
		}
	}
	// A listing that ended because the call did must not end OK.
	if err := callCtx.Err(); err != nil {
		return s.status(callCtx, err)
	}
	return nil
}

// listError is the status a List ends with after sent tokens. A cursor
// whose token is gone fails before anything is sent (FAILED_PRECONDITION);
// cbkgate's own resume after a cut that lost its place ends the listing
// after what was sent (ABORTED), never with a silent gap.
func (s *Service) listError(ctx context.Context, err error, sent int) error {
	if !errors.Is(err, chatbotkit.ErrCursorStale) || ctx.Err() != nil {
		return s.status(ctx, err)
	}
	if sent == 0 {
		return apierr.WithLogDetail(apierr.Status(codes.FailedPrecondition, apierr.ReasonCursorStale,
			"the cursor's token is no longer in the listing, so where to resume is unknown; list again from the start"), err.Error())
	}
	return apierr.WithLogDetail(apierr.Status(codes.Aborted, apierr.ReasonCursorStale,
		"ChatBotKit's stream broke off and the listing no longer holds the last token sent, so it cannot be resumed exactly; resume from an earlier cursor or list again"), err.Error())
}

func upstreamOrder(o tokenv1.Order) chatbotkit.Order {
	switch o {
	case tokenv1.Order_ORDER_ASC:
		return chatbotkit.OrderAsc
	case tokenv1.Order_ORDER_DESC:
		return chatbotkit.OrderDesc
	default:
		return chatbotkit.OrderDefault
	}
}

// Create mints a token. The REST client never retries a create that may
// have reached ChatBotKit, so a create is sent at most once; with a
// request_id, at most once per request_id (idempotent.go).
func (s *Service) Create(ctx context.Context, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, error) {
	if err := validateCreate(req); err != nil {
		return nil, err
	}
	in, err := tokenInput(optional(req.GetName()), optional(req.GetDescription()), req.GetConfig(), req.GetMeta())
	if err != nil {
		return nil, err
	}
	if req.GetRequestId() != "" {
		return s.createIdempotent(ctx, req, in)
	}
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	upCtx, cancel := upstreamContext(ctx)
	defer cancel()
	created, err := s.client.Create(upCtx, auth.UpstreamSecret(ctx), req.GetUserId(), in)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &tokenv1.CreateResponse{
		Id:         created.ID,
		Token:      created.Token.Reveal(),
		CreateTime: timestamppb.New(created.CreatedAt),
	}, nil
}

// Update changes the fields that are set and leaves the rest as they are.
// An Update that sets meta first reads the token's meta, to keep cbkgate's
// markers in it (keepMarkers): two upstream requests instead of one.
func (s *Service) Update(ctx context.Context, req *tokenv1.UpdateRequest) (*tokenv1.UpdateResponse, error) {
	if err := validateTokenRef(req.GetUserId(), req.GetTokenId()); err != nil {
		return nil, err
	}
	in, err := tokenInput(req.Name, req.Description, req.GetConfig(), req.GetMeta())
	if err != nil {
		return nil, err
	}
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	if in.Meta != nil {
		if in.Meta, err = s.keepMarkers(ctx, req.GetUserId(), req.GetTokenId(), in.Meta); err != nil {
			return nil, err
		}
		// The update is the call's second upstream request. The call was
		// admitted (before any upstream request, where a refusal belongs),
		// so its rate paces this one, as it paces a List's.
		if err := s.pace(ctx); err != nil {
			return nil, s.status(ctx, err)
		}
	}
	upCtx, cancel := upstreamContext(ctx)
	defer cancel()
	id, err := s.client.Update(upCtx, auth.UpstreamSecret(ctx), req.GetUserId(), req.GetTokenId(), in)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &tokenv1.UpdateResponse{Id: id}, nil
}

// keepMarkers returns meta, the meta an Update is about to send for
// userID's token tokenID, with every key of the token's current meta that
// starts with "cbkgate." added, as it is stored.
//
// Why: ChatBotKit replaces a token's meta whole on update, so an Update
// that sets meta would otherwise erase the markers a Create with a
// request_id left (cbkgate.request_id, cbkgate.attempt; callers may not
// set them, validate.go). A reconciliation would then not find the token a
// lost attempt made, and a second live token would carry the request_id.
// ChatBotKit has no endpoint that fetches one token, so the token's meta
// is read from the user's listing: one streamed read (pages, when
// ChatBotKit answers with them), closed as soon as the token is read.
//
//   - A token the listing does not hold gets meta as it is (ChatBotKit
//     answers the update 404 then).
//   - A lookup that fails fails the Update with that failure's status, and
//     no update is sent: one sent without the markers could erase them.
//   - The lookup's first request was admitted by the caller's rate with
//     the call; any other (a retry, a resumed stream, a next page) is
//     paced by it, as a List's are.
//   - A token listed with meta_omitted (meta nested deeper than cbkgate
//     passes on) is updated like any other: the lookup needs only the top
//     level of the stored meta, which encoding/json reads at any depth the
//     listing allows (a line nested deeper than that fails the listing, so
//     the lookup, before anything is sent). The caller's meta replaces the
//     deep one, as asked, and the markers are kept. A stored meta that is
//     not a JSON object is a malformed answer (INTERNAL), as in a List.
func (s *Service) keepMarkers(ctx context.Context, userID, tokenID string, meta json.RawMessage) (json.RawMessage, error) {
	upCtx, cancel := upstreamContext(ctx)
	defer cancel()
	opts := chatbotkit.StreamOptions{
		PageSize:      maxPageSize, // fewest round trips, should pages come back
		BeforeRequest: s.afterAdmitted(),
	}
	lister, err := s.client.OpenList(upCtx, auth.UpstreamSecret(ctx), userID, opts)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	defer lister.Close()
	for {
		tok, _, err := lister.Next()
		if err == io.EOF {
			return meta, nil
		}
		if err != nil {
			return nil, s.status(ctx, err)
		}
		if tok.ID != tokenID {
			continue
		}
		lister.Close() // the rest of the listing is not needed
		out, err := withMarkers(meta, tok.Meta)
		if err != nil {
			return nil, s.status(ctx, fmt.Errorf("%w: meta of token %q: %v", chatbotkit.ErrMalformedResponse, tok.ID, err))
		}
		return out, nil
	}
}

// withMarkers returns meta (a JSON object as appendStruct writes it, with
// no key of cbkgate's) with the keys of stored (a token's meta as listed;
// nil when it has none) that start with metaPrefix added, their values as
// stored.
func withMarkers(meta, stored json.RawMessage) (json.RawMessage, error) {
	if len(stored) == 0 {
		return meta, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stored, &fields); err != nil || fields == nil {
		return nil, errors.New("not a JSON object")
	}
	var keys []string
	for k := range fields {
		if strings.HasPrefix(k, metaPrefix) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return meta, nil
	}
	slices.Sort(keys)
	out := append(make([]byte, 0, len(meta)+64*len(keys)), meta[:len(meta)-1]...)
	for _, k := range keys {
		if len(out) > 1 {
			out = append(out, ',')
		}
		var err error
		if out, err = appendString(out, k); err != nil {
			return nil, err
		}
		out = append(append(out, ':'), fields[k]...)
	}
	return append(out, '}'), nil
}

// Delete revokes a token.
func (s *Service) Delete(ctx context.Context, req *tokenv1.DeleteRequest) (*tokenv1.DeleteResponse, error) {
	if err := validateTokenRef(req.GetUserId(), req.GetTokenId()); err != nil {
		return nil, err
	}
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	upCtx, cancel := upstreamContext(ctx)
	defer cancel()
	id, err := s.client.Delete(upCtx, auth.UpstreamSecret(ctx), req.GetUserId(), req.GetTokenId())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &tokenv1.DeleteResponse{Id: id}, nil
}

// optional treats an empty string as "not given": proto3 cannot tell an
// empty name from an absent one on Create, and sending "" would only
// overwrite ChatBotKit's own default.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func tokenInput(name, description *string, config, meta *structpb.Struct) (chatbotkit.TokenInput, error) {
	in := chatbotkit.TokenInput{Name: name, Description: description}
	var v violations
	v.checkDepth("config", config)
	v.checkDepth("meta", meta)
	v.checkMetaKeys(meta)
	if err := v.err(); err != nil {
		return in, err
	}
	var err error
	if in.Config, err = structJSON("config", config); err != nil {
		return in, err
	}
	if in.Meta, err = structJSON("meta", meta); err != nil {
		return in, err
	}
	return in, nil
}

// structJSON encodes a Struct as the JSON object ChatBotKit expects; nil
// stays nil so that an unset field is not sent at all.
func structJSON(field string, s *structpb.Struct) (json.RawMessage, error) {
	if s == nil {
		return nil, nil
	}
	b, err := appendStruct(nil, s)
	if err != nil {
		// A Struct holding NaN or Infinity has no JSON form.
		return nil, invalidField(field, "%s cannot be encoded as JSON: %v", field, err)
	}
	return b, nil
}

// setToken converts an upstream token into tok, whose create and update
// times go in times. Meta that is not a JSON object is a malformed upstream
// answer, not something to pass on half-converted. Meta nested deeper than
// maxStructDepth is left out and MetaOmitted set: passed on, it could make
// the message undecodable for the client (protobuf decoders stop at a
// recursion limit), which would end the listing at this token every time.
func setToken(tok *tokenv1.Token, times *[2]timestamppb.Timestamp, t *chatbotkit.Token) error {
	tok.Id, tok.Name, tok.Description = t.ID, t.Name, t.Description
	created, updated := &times[0], &times[1]
	created.Seconds, created.Nanos = t.CreatedAt.Unix(), int32(t.CreatedAt.Nanosecond())
	updated.Seconds, updated.Nanos = t.UpdatedAt.Unix(), int32(t.UpdatedAt.Nanosecond())
	tok.CreateTime, tok.UpdateTime = created, updated
	if jsonDeeper(t.Meta, maxStructDepth) {
		tok.MetaOmitted = true
		return nil
	}
	if len(t.Meta) > 0 && string(t.Meta) != "null" {
		tok.Meta = &structpb.Struct{}
		if err := protojson.Unmarshal(t.Meta, tok.Meta); err != nil {
			return fmt.Errorf("%w: meta of token %q is not a JSON object: %v", chatbotkit.ErrMalformedResponse, t.ID, err)
		}
	}
	return nil
}
