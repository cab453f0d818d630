package service

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// listAhead is how many tokens a List holds converted and ready while the
// caller takes earlier ones. Reading and converting on a goroutine of their
// own, while the call's goroutine sends, lets a List use two cores (the
// upstream's stream is read only this far ahead of the caller, so memory
// stays bounded); on one goroutine a List of 10,000 tokens took half as
// long again (cmd/bench, list-latency phase).
const listAhead = 64

// listItem is one converted token, or the status that ends the listing.
type listItem struct {
	resp *tokenv1.ListResponse
	err  error
}

// readList reads the listing from lister on its own goroutine, converts
// each token and its cursor, and hands them to out, at most limit (0: all)
// of them. It closes out at the end of the listing, after an error (sent as
// the final item), or when ctx ends, then closes lister (which closes the
// upstream stream) and done.
func (s *Service) readList(ctx context.Context, lister *chatbotkit.Lister, order chatbotkit.Order, limit int, out chan<- listItem, done chan<- struct{}) {
	defer close(done)
	defer lister.Close()
	defer close(out)
	send := func(it listItem) bool {
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// This goroutine serves the call but runs outside the recovery
	// interceptor: a panic here would end the process. It ends the call
	// with INTERNAL instead, the panic and its stack in the call's log line.
	defer func() {
		if r := recover(); r != nil {
			send(listItem{err: apierr.WithLogDetail(status.New(codes.Internal, msgInternal),
				fmt.Sprintf("panic while reading the listing: %v\n%s", r, debug.Stack()))})
		}
	}()
	var batch responseBatch
	for n := 0; limit == 0 || n < limit; n++ {
		if s.tokenRead != nil {
			s.tokenRead()
		}
		tok, pos, err := lister.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			// Every token read before went out first: n were sent.
			send(listItem{err: s.listError(ctx, err, n)})
			return
		}
		resp, times := batch.next()
		if err := setToken(resp.Token, times, &tok); err != nil {
			send(listItem{err: s.status(ctx, err)})
			return
		}
		resp.Cursor = encodeCursor(order, pos)
		if !send(listItem{resp: resp}) {
			return
		}
	}
}

// responseBatch hands out ListResponses made batchSize at a time: one
// allocation of each kind per batch rather than four per token. Each is
// sent once and never touched again.
type responseBatch struct {
	resps []tokenv1.ListResponse
	toks  []tokenv1.Token
	times [][2]timestamppb.Timestamp
}

const batchSize = 64

func (b *responseBatch) next() (*tokenv1.ListResponse, *[2]timestamppb.Timestamp) {
	if len(b.resps) == 0 {
		b.resps = make([]tokenv1.ListResponse, batchSize)
		b.toks = make([]tokenv1.Token, batchSize)
		b.times = make([][2]timestamppb.Timestamp, batchSize)
	}
	r, times := &b.resps[0], &b.times[0]
	r.Token = &b.toks[0]
	b.resps, b.toks, b.times = b.resps[1:], b.toks[1:], b.times[1:]
	return r, times
}
