package failtest

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
)

// TestFaultListCursorStuck: an upstream whose cursor does not move (each
// page hands back the cursor it was asked with) would make the listing
// repeat the same tokens forever. The caller gets each token once and then
// INTERNAL: never duplicates, never an endless stream.
func TestFaultListCursorStuck(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	page := fu.Tokens("tok_", 2)
	up.SetDefault(fu.List, fu.Page("c1", page...))

	stream, err := g.Client().List(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, err := stream.Recv()
		if err != nil {
			wantCode(t, err, codes.Internal)
			break
		}
		got = append(got, r.GetToken().GetId())
		if len(got) > 10*len(page) {
			t.Fatalf("the listing goes round in circles: %v", got)
		}
	}
	if !slices.Equal(got, tokenIDs(page)) {
		t.Fatalf("listed %v, want %v once", got, tokenIDs(page))
	}
	wantCalls(t, up, fu.List, 2)
}
