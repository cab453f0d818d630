// Package service implements cbkgate.token.v1.TokenService on top of the
// ChatBotKit REST client: it validates requests before anything goes
// upstream, turns ChatBotKit's answers into proto messages, and its errors
// into the gRPC statuses of the contract.
package service

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/callerrate"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// defaultPageSize is the upstream page size when a ListRequest leaves
// page_size at 0. ChatBotKit clamps larger takes, so bigger pages only mean
// fewer round trips up to its maximum.
const defaultPageSize = 100

// maxPageSize is the largest upstream page a List asks for; a larger
// page_size is clamped to it. With the client's refusal of pages longer
// than asked for, a List holds at most two pages of this many tokens.
const maxPageSize = chatbotkit.MaxTake

// upstreamTimeout bounds one upstream request (a unary call, or one page of
// a listing) whose caller set no deadline, so a ChatBotKit that never
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
	callers *callerrate.Limiter
	// pageFetched, when set (by tests), runs on the page-fetching
	// goroutine after each upstream page.
	pageFetched func()
	// metaOmitted, when set, is told of each token List sends without its
	// meta (see setToken).
	metaOmitted func(ctx context.Context, userID, tokenID string)
}

// Option configures a Service.
type Option func(*Service)

// WithCallerRate limits the upstream requests of each caller identity
// (auth.Caller): a Create, Update or Delete over the rate is refused with
// RESOURCE_EXHAUSTED (RATE_LIMITED, RetryInfo) before it goes upstream;
// a List waits before each page instead. nil means no limit.
func WithCallerRate(l *callerrate.Limiter) Option {
	return func(s *Service) { s.callers = l }
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
	return s
}

// admit takes one upstream request from the caller's rate, or returns the
// RATE_LIMITED error that refuses the call.
func (s *Service) admit(ctx context.Context) error {
	ok, retryAfter := s.callers.Allow(auth.Caller(ctx))
	if ok {
		return nil
	}
	return apierr.New(codes.ResourceExhausted, apierr.ReasonRateLimited,
		"this caller is over its rate of upstream requests (--caller-rate); retry later",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
}

// List streams every token of a user from the request's cursor on, page by
// page. While the caller receives one page, the next is already being
// fetched, so upstream latency overlaps with sending; at most two pages are
// held at a time, so memory stays bounded however long the list.
func (s *Service) List(req *tokenv1.ListRequest, stream grpc.ServerStreamingServer[tokenv1.ListResponse]) error {
	if err := validateList(req); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	// Stops the prefetching goroutine whenever List returns early.
	defer cancel()

	pages := s.fetchPages(ctx, req)
	for p := range pages {
		if p.err != nil {
			return s.status(stream.Context(), p.err)
		}
		// A page's messages are made together: one allocation of each kind
		// per page rather than four per token.
		n := len(p.page.Items)
		resps := make([]tokenv1.ListResponse, n)
		toks := make([]tokenv1.Token, n)
		times := make([][2]timestamppb.Timestamp, n)
		for i := range p.page.Items {
			resp := &resps[i]
			resp.Token = &toks[i]
			if err := setToken(resp.Token, &times[i], &p.page.Items[i]); err != nil {
				return s.status(stream.Context(), err)
			}
			if resp.Token.GetMetaOmitted() && s.metaOmitted != nil {
				s.metaOmitted(stream.Context(), req.GetUserId(), resp.Token.GetId())
			}
			if i == n-1 {
				resp.Cursor = p.page.Cursor
			}
			if err := stream.Send(resp); err != nil {
				// The caller is gone or its deadline passed; the stream's
				// status is already decided by gRPC.
				return err
			}
		}
	}
	// The fetcher closes the channel early only when ctx ended; a listing
	// cut short that way must not end OK.
	if err := stream.Context().Err(); err != nil {
		return s.status(stream.Context(), err)
	}
	return nil
}

type pageResult struct {
	page *chatbotkit.Page
	err  error
}

// fetchPages fetches the listing's pages in order on a goroutine of its
// own, one page ahead of the sender. The channel ends after the last page,
// after an error (sent as the final result), or when ctx ends.
func (s *Service) fetchPages(ctx context.Context, req *tokenv1.ListRequest) <-chan pageResult {
	out := make(chan pageResult, 1)
	go func() {
		defer close(out)
		// This goroutine serves the call but runs outside the recovery
		// interceptor: a panic here would end the process. It ends the
		// call with INTERNAL instead, the panic and its stack in the
		// call's log line.
		defer func() {
			if r := recover(); r != nil {
				err := apierr.WithLogDetail(status.New(codes.Internal, msgInternal),
					fmt.Sprintf("panic while fetching pages: %v\n%s", r, debug.Stack()))
				select {
				case out <- pageResult{err: err}:
				case <-ctx.Done():
				}
			}
		}()
		cred := auth.UpstreamSecret(ctx)
		caller := auth.Caller(ctx)
		opts := chatbotkit.ListOptions{Cursor: req.GetCursor(), Order: upstreamOrder(req.GetOrder())}
		pageSize := int(req.GetPageSize())
		if pageSize == 0 {
			pageSize = defaultPageSize
		}
		// CONTRACT.md "Upstream calls": larger pages are clamped, not
		// refused; ChatBotKit serves no more per page anyway.
		pageSize = min(pageSize, maxPageSize)
		limit := int(req.GetLimit()) // 0: no limit
		fetched := 0
		for {
			opts.Take = pageSize
			if limit > 0 {
				opts.Take = min(pageSize, limit-fetched)
			}
			// Every page is an upstream request of its own: a List is
			// paced by the caller's rate, never failed by it.
			if err := s.callers.Wait(ctx, caller); err != nil {
				return // ctx ended: List reports it
			}
			pageCtx, cancel := upstreamContext(ctx)
			if s.callers != nil {
				// A retried page is another upstream request: it waits its
				// turn too.
				pageCtx = chatbotkit.WithRetryGate(pageCtx, func(ctx context.Context) error { return s.callers.Wait(ctx, caller) })
			}
			page, err := s.client.ListPage(pageCtx, cred, req.GetUserId(), opts)
			cancel()
			if s.pageFetched != nil {
				s.pageFetched()
			}
			if err == nil && opts.Cursor != "" && page.Cursor == opts.Cursor && len(page.Items) > 0 {
				// A cursor that does not move would repeat this page
				// forever: duplicates, and a listing that never ends.
				err = fmt.Errorf("%w: list: a page of tokens came back with the cursor it was asked for", chatbotkit.ErrMalformedResponse)
				page = nil
			}
			select {
			case out <- pageResult{page: page, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			fetched += len(page.Items)
			// An empty page, or one without a cursor to go on from, is the
			// end of the listing.
			if len(page.Items) == 0 || page.Cursor == "" || (limit > 0 && fetched >= limit) {
				return
			}
			opts.Cursor = page.Cursor
		}
	}()
	return out
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
// have reached ChatBotKit, so a create is sent at most once.
func (s *Service) Create(ctx context.Context, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, error) {
	if err := checkID("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	in, err := tokenInput(optional(req.GetName()), optional(req.GetDescription()), req.GetConfig(), req.GetMeta())
	if err != nil {
		return nil, err
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
	upCtx, cancel := upstreamContext(ctx)
	defer cancel()
	id, err := s.client.Update(upCtx, auth.UpstreamSecret(ctx), req.GetUserId(), req.GetTokenId(), in)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &tokenv1.UpdateResponse{Id: id}, nil
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
