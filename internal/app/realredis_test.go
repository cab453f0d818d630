//go:build redis

package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/redistest"
)

// Two cbkgates on one real redis-server (build tag redis): a request id
// is executed once whichever one each try reaches; a cbkgate whose
// --state-key-file differs cannot open the records and refuses
// (STATE_UNAVAILABLE) rather than create again; the password in the URL
// is never logged.
func TestTwoReplicasShareRecords(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "pw-s3cr3t")
	dir := t.TempDir()
	key, other := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("a", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte(strings.Repeat("b", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, up := newEmulator(t, "held")
	url := "--state=redis://:pw-s3cr3t@" + srv.Addr + "/0"
	a := startServer(t, up.URL, gatetest.Held("held"), gatetest.Args(url, "--state-key-file="+key))
	b := startServer(t, up.URL, gatetest.Held("held"), gatetest.Args(url, "--state-key-file="+key))
	req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "shared-1"}
	first, st := a.grpcCaller("").create(t, req)
	if st.Code() != codes.OK {
		t.Fatal(st)
	}
	second, st := b.grpcCaller("").create(t, req)
	if st.Code() != codes.OK || !proto.Equal(first, second) {
		t.Fatalf("the other replica answered %v %v, first %v", second, st, first)
	}
	if n := up.Calls(fu.Create); n != 1 {
		t.Fatalf("%d upstream creates, want 1", n)
	}
	c := startServer(t, up.URL, gatetest.Held("held"), gatetest.Args(url, "--state-key-file="+other))
	if _, st := c.grpcCaller("").create(t, req); st.Code() != codes.Unavailable || gatetest.ErrorInfo(st).GetReason() != "STATE_UNAVAILABLE" {
		t.Fatalf("a replica with another key: %v", st)
	}
	if n := up.Calls(fu.Create); n != 1 {
		t.Fatalf("%d upstream creates, want 1", n)
	}
	for _, s := range []*server{a, b, c} {
		if strings.Contains(s.Logs().String(), "pw-s3cr3t") {
			t.Fatal("the Redis password was logged")
		}
	}
}
