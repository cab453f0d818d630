package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	"github.com/cbkgate/cbkgate/internal/state"
)

// The meta keys cbkgate adds to a token created for a request_id: which
// request made it, and which attempt (a random value kept in the record),
// so that a reconciliation can find the tokens of an attempt whose outcome
// is unknown. Callers may not set keys with this prefix (validate.go).
const (
	metaPrefix    = "cbkgate."
	metaRequestID = metaPrefix + "request_id"
	metaAttempt   = metaPrefix + "attempt"
)

// ReplayedHeader is the response metadata (and HTTP header) of a Create
// answered from its record rather than by a new upstream create.
const ReplayedHeader = "idempotent-replayed"

// Bounds of idempotent Creates. Variables, so tests can shorten them.
var (
	// createBound bounds each upstream create made for a request_id,
	// whatever the caller's deadline, and each reconciliation's listing
	// and deletes: a pending record is then never older than this while
	// its owner lives.
	createBound = 20 * time.Second
	// reconcileAfter is how long after an attempt began a repeat may
	// reconcile it: past createBound, with a margin for a create still
	// being carried out upstream after cbkgate gave up on its answer.
	reconcileAfter = 30 * time.Second
	// recordPoll is how often a repeat waiting for a running first call
	// looks at the record again.
	recordPoll = 50 * time.Millisecond
	// recordWriteTimeout bounds the write of an outcome, made even when
	// the caller has gone (the token exists either way).
	recordWriteTimeout = 5 * time.Second
)

// outcome sorts the end of an upstream create for its record.
type outcome int

const (
	// outcomeFree: nothing was created; the request_id stays free.
	outcomeFree outcome = iota
	// outcomeDefinitive: ChatBotKit refused for good; the refusal is
	// recorded and replayed.
	outcomeDefinitive
	// outcomeUnknown: the create went out and no definitive answer came.
	outcomeUnknown
)

// classify is the contract's sorting of a failed create.
func classify(err error) outcome {
	var ae *chatbotkit.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 400, 402, 403, 404, 409, 413, 422:
			return outcomeDefinitive
		case http.StatusUnauthorized:
			// Not recorded, unlike the contract's list: a 401 is the one
			// refusal anyone can get without a valid secret, and in
			// pass-through mode every made-up bearer is a caller of its
			// own, so recording 401s let one client fill the process's
			// records (100,000 made-up creates refused every other
			// caller's request_id for 24 h). Nothing was created; a
			// retry with a good secret runs.
			return outcomeFree
		case http.StatusRequestTimeout:
			// A timeout: the create may have been carried out.
			return outcomeUnknown
		}
		if ae.Status < 500 || ae.Status == http.StatusServiceUnavailable {
			// 429, 503 and any other refusal made nothing, and are not
			// the definitive ones the contract records: the id stays free.
			return outcomeFree
		}
		return outcomeUnknown
	}
	if chatbotkit.NotSent(err) {
		return outcomeFree
	}
	return outcomeUnknown
}

// createIdempotent runs a Create with a request_id at most once per
// (caller, user_id, request_id): the first call claims the record and
// executes; repeats replay its outcome, wait for it while it runs, or
// reconcile an attempt whose outcome is unknown.
func (s *Service) createIdempotent(ctx context.Context, req *tokenv1.CreateRequest, in chatbotkit.TokenInput) (*tokenv1.CreateResponse, error) {
	key := state.Key{Caller: auth.Caller(ctx), UserID: req.GetUserId(), RequestID: req.GetRequestId()}
	digest, err := fieldsDigest(req)
	if err != nil {
		return nil, err
	}
	for {
		now, err := s.records.Now(ctx)
		if err != nil {
			return nil, s.stateError(ctx, err)
		}
		mine := &state.Record{State: state.Pending, Digest: digest, Attempts: []string{newAttempt()}, Started: now}
		cur, claimed, err := s.records.Claim(ctx, key, mine)
		if err != nil {
			return nil, s.stateError(ctx, err)
		}
		if claimed {
			return s.execute(ctx, key, req, in, cur, s.admit)
		}
		for cur != nil {
			if !bytes.Equal(cur.Digest, digest) {
				return nil, invalidRequestID()
			}
			if cur.State == state.Done {
				return s.replay(ctx, cur)
			}
			if age := now.Sub(cur.Started); age < reconcileAfter {
				if cur.State == state.Unknown {
					return nil, outcomeUnknownError(reconcileAfter - age)
				}
				// The first call is running: wait for its outcome,
				// within this call's own deadline.
				if err := sleep(ctx, recordPoll); err != nil {
					return nil, s.status(ctx, err)
				}
			} else {
				next := &state.Record{State: state.Pending, Digest: digest, Started: now,
					Attempts: append(append([]string(nil), cur.Attempts...), newAttempt())}
				ok, err := s.records.Replace(ctx, key, cur, next)
				if err != nil {
					return nil, s.stateError(ctx, err)
				}
				if ok {
					return s.reconcile(ctx, key, req, in, cur, next)
				}
			}
			if cur, err = s.records.Get(ctx, key); err != nil {
				return nil, s.stateError(ctx, err)
			}
			if now, err = s.records.Now(ctx); err != nil {
				return nil, s.stateError(ctx, err)
			}
		}
		// The record went away meanwhile (its request_id was freed):
		// claim it afresh.
	}
}

// execute makes the upstream create of a claimed record (mine) and records
// its outcome. rate takes the create's request from the caller's rate
// (admit, or pace after a reconciliation's requests).
func (s *Service) execute(ctx context.Context, key state.Key, req *tokenv1.CreateRequest, in chatbotkit.TokenInput, mine *state.Record,
	rate func(context.Context) error) (*tokenv1.CreateResponse, error) {
	// The outcome is written even when the caller has gone meanwhile: the
	// token exists either way.
	wctx, cancelWrite := context.WithTimeout(context.WithoutCancel(ctx), recordWriteTimeout)
	defer cancelWrite()
	if err := rate(ctx); err != nil {
		s.forget(wctx, key, mine)
		return nil, err
	}
	var err error
	if in.Meta, err = structJSON("meta", markedMeta(req.GetMeta(), req.GetRequestId(), mine.Attempt())); err != nil {
		s.forget(wctx, key, mine)
		return nil, err
	}
	upCtx, cancel := context.WithTimeout(ctx, createBound)
	created, err := s.client.Create(upCtx, auth.UpstreamSecret(ctx), req.GetUserId(), in)
	cancel()
	if err == nil {
		done := &state.Record{State: state.Done, Digest: mine.Digest, Started: mine.Started,
			ID: created.ID, Token: created.Token.Reveal(), CreateTime: created.CreatedAt}
		if ok, werr := s.records.Replace(wctx, key, mine, done); werr != nil || !ok {
			if werr == nil && s.revokeUnrecorded(ctx, req.GetUserId(), created.ID) {
				return nil, apierr.Status(codes.Unavailable, apierr.ReasonStateUnavailable,
					"cbkgate lost its record of this request_id (its state store was flushed), so it revoked the token ChatBotKit had just created; repeat the call").Err()
			}
			// Unrecorded, the token would be taken for the orphan of an
			// unknown outcome by the next repeat, which deletes it: the
			// caller must not rely on it.
			return nil, apierr.WithLogDetail(apierr.Status(codes.Unavailable, apierr.ReasonUpstreamOutcomeUnknown,
				"ChatBotKit created the token but cbkgate could not record it; repeat the call with the same request_id after 30 s",
				&errdetails.RetryInfo{RetryDelay: durationpb.New(reconcileAfter)}), "recording the created token failed")
		}
		return createResponse(done), nil
	}
	switch classify(err) {
	case outcomeDefinitive:
		var ae *chatbotkit.APIError
		errors.As(err, &ae)
		refusal := apiStatus(ae, s.redactor(ctx))
		st, _ := status.FromError(refusal)
		done := &state.Record{State: state.Done, Digest: mine.Digest, Started: mine.Started, Status: statusBytes(st)}
		// A failed write leaves the record pending: a repeat reconciles
		// it later, which is safe (the store reported the failure).
		_, _ = s.records.Replace(wctx, key, mine, done)
		return nil, refusal
	case outcomeFree:
		s.forget(wctx, key, mine)
		return nil, s.status(ctx, err)
	}
	unknown := &state.Record{State: state.Unknown, Digest: mine.Digest, Started: mine.Started, Attempts: mine.Attempts}
	_, _ = s.records.Replace(wctx, key, mine, unknown)
	return nil, apierr.WithLogDetail(apierr.Status(codes.Unavailable, apierr.ReasonUpstreamOutcomeUnknown,
		"ChatBotKit may or may not have created the token; repeat the call with the same request_id after 30 s to settle it",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(reconcileAfter)}), s.client.Redact(err.Error(), auth.UpstreamSecret(ctx)))
}

// revokeUnrecorded deletes the token a create just made when its record
// has gone from the store (Replace found nothing to replace: the store was
// flushed, or evicted the record). No repeat can find that token then, not
// even by reconciling, and the next one would create a second live token
// with the request_id. Only this call knows its id, so it revokes it; it
// reports whether the token is gone.
func (s *Service) revokeUnrecorded(ctx context.Context, userID, tokenID string) bool {
	upCtx, cancel := upstreamContext(context.WithoutCancel(ctx))
	defer cancel()
	return s.revoke(upCtx, ctx, userID, tokenID) == nil
}

// forget frees mine's request_id: nothing was created.
func (s *Service) forget(ctx context.Context, key state.Key, mine *state.Record) {
	// A failed removal leaves the record pending: a repeat then
	// reconciles, finds no token to delete, and creates.
	_ = s.records.Remove(ctx, key, mine)
}

// replay answers a repeat from its Done record.
func (s *Service) replay(ctx context.Context, r *state.Record) (*tokenv1.CreateResponse, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(ReplayedHeader, "true"))
	if s.onReplay != nil {
		s.onReplay()
	}
	if r.Status != nil {
		st := &spb.Status{}
		if err := proto.Unmarshal(r.Status, st); err != nil {
			return nil, s.stateError(ctx, state.ErrUndecryptable)
		}
		return nil, status.FromProto(st).Err()
	}
	return createResponse(r), nil
}

func createResponse(r *state.Record) *tokenv1.CreateResponse {
	return &tokenv1.CreateResponse{Id: r.ID, Token: r.Token, CreateTime: timestamppb.New(r.CreateTime)}
}

// fieldsDigest identifies a CreateRequest's fields: the SHA-256 of its
// deterministic encoding with request_id cleared, so JSON key order or
// 1 against 1.0 make no difference.
func fieldsDigest(req *tokenv1.CreateRequest) ([]byte, error) {
	c := proto.Clone(req).(*tokenv1.CreateRequest)
	c.RequestId = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, status.Error(codes.Internal, msgInternal)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// markedMeta is meta with cbkgate's markers added (meta itself untouched).
func markedMeta(meta *structpb.Struct, requestID, attempt string) *structpb.Struct {
	out := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(meta.GetFields())+2)}
	for k, v := range meta.GetFields() {
		out.Fields[k] = v
	}
	out.Fields[metaRequestID] = structpb.NewStringValue(requestID)
	out.Fields[metaAttempt] = structpb.NewStringValue(attempt)
	return out
}

// newAttempt is a fresh attempt marker: 128 random bits.
func newAttempt() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func invalidRequestID() error {
	var v violations
	v.add("request_id", "request_id was already used with other fields; use a new request_id for a different request")
	return apierr.New(codes.InvalidArgument, apierr.ReasonRequestIDReused, v[0].GetDescription(), &errdetails.BadRequest{FieldViolations: v})
}

func outcomeUnknownError(wait time.Duration) error {
	return apierr.New(codes.Unavailable, apierr.ReasonUpstreamOutcomeUnknown,
		"an earlier call with this request_id ended without knowing whether ChatBotKit created the token; repeat it after the retry delay to settle it",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
}

// stateError is the refusal of a Create whose record cannot be used: too
// many records (memory mode), or the store unreachable or its record
// undecryptable. Nothing goes upstream.
func (s *Service) stateError(ctx context.Context, err error) error {
	if errors.Is(err, state.ErrFull) {
		return apierr.New(codes.ResourceExhausted, apierr.ReasonRateLimited,
			"cbkgate holds as many request_id records as it may; retry later or send the create without request_id",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Minute)})
	}
	if cerr := ctx.Err(); cerr != nil {
		return s.status(ctx, cerr)
	}
	return apierr.WithLogDetail(apierr.Status(codes.Unavailable, apierr.ReasonStateUnavailable,
		"cbkgate's shared state cannot be used, so a create with a request_id cannot be run safely; retry later"), err.Error())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusBytes is st's binary encoding, for a record.
func statusBytes(st *status.Status) []byte {
	b, _ := proto.Marshal(st.Proto())
	return b
}
