package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// emulatorIDs reads a user's token ids straight from the emulator's JSONL
// stream, independently of cbkgate and of pagination.
func emulatorIDs(t *testing.T, base, secret, user, order string) []string {
	t.Helper()
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet,
		base+"/v1/partner/user/"+url.PathEscape(user)+"/token/list?order="+order, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearer(secret))
	req.Header.Set("Accept", "application/jsonl")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("emulator stream: HTTP %d", resp.StatusCode)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Type string `json:"type"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		out = append(out, line.Data.ID)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func responseIDs(rs []*tokenv1.ListResponse) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.GetToken().GetId()
	}
	return out
}

// diff describes how got differs from want: duplicates, gaps, order.
func diff(got, want []string) string {
	seen := map[string]int{}
	var dups []string
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			dups = append(dups, id)
		}
	}
	var missing []string
	for _, id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	return fmt.Sprintf("got %d ids, want %d; %d duplicated %v; %d missing (first few %v)",
		len(got), len(want), len(dups), dups, len(missing), missing[:min(len(missing), 5)])
}

// TestListPagination lists a long list across many upstream pages in every
// order, page size and limit, over both transports, and checks the exact
// sequence (no duplicates, no gaps) and the cursors at page ends.
func TestListPagination(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-pages"
	const user, n = "many-tokens", 237
	emu, up := newEmulator(t, secret)
	emu.Seed(user, n)
	asc := emulatorIDs(t, up.URL, secret, user, "asc")
	desc := emulatorIDs(t, up.URL, secret, user, "desc")
	if len(asc) != n || len(desc) != n {
		t.Fatalf("emulator holds %d/%d tokens, want %d", len(asc), len(desc), n)
	}
	s := startServer(t, up.URL)

	cases := []struct {
		name     string
		order    tokenv1.Order
		pageSize int32
		limit    int32
		want     []string
		pageEnd  int // the upstream page size the cursors must mark
	}{
		{"defaults", tokenv1.Order_ORDER_UNSPECIFIED, 0, 0, desc, 100},
		{"desc page 7", tokenv1.Order_ORDER_DESC, 7, 0, desc, 7},
		{"asc page 7", tokenv1.Order_ORDER_ASC, 7, 0, asc, 7},
		{"asc page 1 limit 5", tokenv1.Order_ORDER_ASC, 1, 5, asc[:5], 1},
		{"asc page 10 limit 30 (page boundary)", tokenv1.Order_ORDER_ASC, 10, 30, asc[:30], 10},
		{"desc page 100 limit 150", tokenv1.Order_ORDER_DESC, 100, 150, desc[:150], 100},
		{"asc limit above the total", tokenv1.Order_ORDER_ASC, 50, 1000, asc, 50},
		{"asc page above upstream max", tokenv1.Order_ORDER_ASC, 500, 0, asc, 0},
	}
	for _, c := range []caller{s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret)), s.connectCaller(bearer(secret)), s.grpcWebCaller(bearer(secret)), s.sseCaller(bearer(secret))} {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				rs, st := c.list(t, &tokenv1.ListRequest{UserId: user, Order: tc.order, PageSize: tc.pageSize, Limit: tc.limit})
				wantCode(t, tc.name, st, codes.OK)
				if got := responseIDs(rs); !slices.Equal(got, tc.want) {
					t.Errorf("%s: %s", tc.name, diff(got, tc.want))
					continue
				}
				if rs[len(rs)-1].GetCursor() == "" {
					t.Errorf("%s: the last token has no cursor", tc.name)
				}
				for i := tc.pageEnd - 1; tc.pageEnd > 0 && i < len(rs); i += tc.pageEnd {
					if rs[i].GetCursor() == "" {
						t.Errorf("%s: token %d ends an upstream page of %d but has no cursor", tc.name, i, tc.pageEnd)
					}
				}
			}
		})
	}

	// Resume: the cursor of any token, passed back, continues right after
	// it, over either transport, with the same order and any page size.
	t.Run("resume", func(t *testing.T) {
		t.Parallel()
		g, h := s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret))
		first, st := g.list(t, &tokenv1.ListRequest{UserId: user, Order: tokenv1.Order_ORDER_ASC, PageSize: 7, Limit: 21})
		wantCode(t, "List first part", st, codes.OK)
		cursor := first[20].GetCursor()
		if cursor == "" {
			t.Fatal("the 21st token, last of the third page of 7, has no cursor")
		}
		for _, tc := range []struct {
			c        caller
			pageSize int32
			limit    int32
			want     []string
		}{
			{g, 0, 0, asc[21:]},
			{h, 0, 0, asc[21:]},
			{h, 13, 40, asc[21:61]},
			{g, 1, 3, asc[21:24]},
		} {
			rs, st := tc.c.list(t, &tokenv1.ListRequest{UserId: user, Order: tokenv1.Order_ORDER_ASC, Cursor: cursor, PageSize: tc.pageSize, Limit: tc.limit})
			wantCode(t, "List resumed", st, codes.OK)
			if got := responseIDs(rs); !slices.Equal(got, tc.want) {
				t.Errorf("%v resumed with page %d limit %d: %s", tc.c, tc.pageSize, tc.limit, diff(got, tc.want))
			}
		}
		// Descending resume from the cursor of the last token listed.
		rs, st := h.list(t, &tokenv1.ListRequest{UserId: user, Order: tokenv1.Order_ORDER_DESC, Limit: 10})
		wantCode(t, "List desc", st, codes.OK)
		rest, st := g.list(t, &tokenv1.ListRequest{UserId: user, Order: tokenv1.Order_ORDER_DESC, Cursor: rs[9].GetCursor()})
		wantCode(t, "List desc resumed", st, codes.OK)
		if got := responseIDs(rest); !slices.Equal(got, desc[10:]) {
			t.Errorf("desc resumed: %s", diff(got, desc[10:]))
		}
	})

	// An empty listing is OK with no tokens (HTTP: 200, no lines).
	for _, c := range []caller{s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret)), s.connectCaller(bearer(secret)), s.grpcWebCaller(bearer(secret)), s.sseCaller(bearer(secret))} {
		rs, st := c.list(t, &tokenv1.ListRequest{UserId: "nobody"})
		wantCode(t, "List empty", st, codes.OK)
		if len(rs) != 0 {
			t.Errorf("%v: empty listing gave %d tokens", c, len(rs))
		}
	}
}
