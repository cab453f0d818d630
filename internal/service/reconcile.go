package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	"github.com/cbkgate/cbkgate/internal/state"
)

// reconcile settles a request_id whose last attempt's outcome is unknown
// (old), once this call has taken the record over (next, pending): it
// deletes every token of the user that carries one of old's attempt
// markers (their secrets are lost), then creates the token anew. So
// exactly one live token carries the request_id in the end, and the
// caller gets its secret. If the listing or a delete fails, old is put
// back, so that another repeat may try again at once.
func (s *Service) reconcile(ctx context.Context, key state.Key, req *tokenv1.CreateRequest, in chatbotkit.TokenInput,
	old, next *state.Record) (*tokenv1.CreateResponse, error) {
	rctx, cancel := context.WithTimeout(ctx, createBound)
	err := s.deleteAttempts(rctx, ctx, req.GetUserId(), old.Attempts)
	cancel()
	if err != nil {
		wctx, cancelWrite := context.WithTimeout(context.WithoutCancel(ctx), recordWriteTimeout)
		defer cancelWrite()
		restored := &state.Record{State: state.Unknown, Digest: old.Digest, Started: old.Started, Attempts: old.Attempts}
		_, _ = s.records.Replace(wctx, key, next, restored)
		return nil, s.status(ctx, err)
	}
	now, err := s.records.Now(ctx)
	if err != nil {
		return nil, s.stateError(ctx, err)
	}
	// Every earlier attempt's tokens are gone: only the new one is left to
	// account for.
	fresh := &state.Record{State: state.Pending, Digest: next.Digest, Started: now, Attempts: []string{next.Attempt()}}
	ok, err := s.records.Replace(ctx, key, next, fresh)
	if err != nil {
		return nil, s.stateError(ctx, err)
	}
	if !ok {
		return nil, outcomeUnknownError(reconcileAfter)
	}
	// Its create waits for the rate like the deletes before it: were it
	// refused, a caller whose burst is smaller than a reconciliation's
	// requests could never settle its request_id.
	return s.execute(ctx, key, req, in, fresh, s.pace)
}

// deleteAttempts deletes every token of userID whose meta carries one of
// attempts as its cbkgate.attempt, each delete audited as token.delete
// under the call's caller. callCtx is the call's own context (for the
// audit line, the secret and the caller's rate); ctx bounds the upstream
// requests.
//
// Each of its upstream requests counts once against --caller-rate, as the
// call's own would: the listing's first request is refused over the rate
// (RATE_LIMITED, nothing sent), and the requests after it (the listing's
// resumes, each delete, and the create after them) wait for the rate
// within ctx, so that a reconciliation once begun is not cut off half-way
// by it.
func (s *Service) deleteAttempts(ctx, callCtx context.Context, userID string, attempts []string) error {
	cred := auth.UpstreamSecret(callCtx)
	if err := s.admit(callCtx); err != nil {
		return err
	}
	lister, err := s.client.OpenList(ctx, cred, userID, chatbotkit.StreamOptions{BeforeRequest: s.afterAdmitted()})
	if err != nil {
		return err
	}
	var doomed []string
	for {
		tok, _, err := lister.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			lister.Close()
			return err
		}
		if carriesAttempt(tok.Meta, attempts) {
			doomed = append(doomed, tok.ID)
		}
	}
	lister.Close()
	for _, id := range doomed {
		if err := s.pace(ctx); err != nil {
			return err
		}
		if err := s.revoke(ctx, callCtx, userID, id); err != nil {
			return err
		}
	}
	return nil
}

// revoke deletes userID's token tokenID for cbkgate's own bookkeeping (a
// lost attempt's token, a token whose record is gone), audited as
// token.delete under the call's caller. A token already gone is what was
// wanted. callCtx is the call's own context (the secret, the audit line);
// ctx bounds the upstream request.
func (s *Service) revoke(ctx, callCtx context.Context, userID, tokenID string) error {
	_, err := s.client.Delete(ctx, auth.UpstreamSecret(callCtx), userID, tokenID)
	var ae *chatbotkit.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		err = nil
	}
	if s.audit != nil {
		code := codes.OK
		if err != nil {
			code = status.Code(s.status(callCtx, err))
		}
		s.audit(callCtx, "token.delete", userID, tokenID, code)
	}
	return err
}

// carriesAttempt reports whether a token's meta holds one of attempts as
// its cbkgate.attempt.
func carriesAttempt(meta json.RawMessage, attempts []string) bool {
	if !bytes.Contains(meta, []byte(metaAttempt)) && !bytes.Contains(meta, []byte(`\u`)) {
		return false // the common case, without decoding (a key may be spelt with \u escapes)
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(meta, &m) != nil {
		return false
	}
	var got string
	if json.Unmarshal(m[metaAttempt], &got) != nil {
		return false
	}
	for _, a := range attempts {
		if got == a {
			return true
		}
	}
	return false
}
