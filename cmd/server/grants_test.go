package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/k8ssecret"
)

// TestSIGHUPReloadsGrants: a real SIGHUP makes the running process re-read
// its grants file with its keys: a call refused before is allowed after,
// and the one allowed before is refused.
func TestSIGHUPReloadsGrants(t *testing.T) {
	t.Parallel()
	const secret = "sighup-grants-upstream-secret"
	const key = "key-signup-0123456789"
	up := httptest.NewServer(emulator.New(emulator.Options{Secret: secret}))
	t.Cleanup(up.Close)
	files := func(grants string) map[string]string {
		return map[string]string{"keys.txt": "signup " + key + "\n", "grants": grants}
	}
	dir := k8ssecret.New(t, files("key:signup create acme-*\n"))
	c := start(t, []string{"--upstream=" + up.URL, "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0",
		"--admin-addr=", "--api-keys-file=" + dir.Path("keys.txt"), "--grants-file=" + dir.Path("grants"), "--log-format=json"}, "CHATBOTKIT_API_SECRET="+secret)
	if err := c.waitListening(); err != nil {
		t.Fatal(err)
	}
	_, client := dial(t, c.grpcAddr)
	create := func(user string) codes.Code {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Create(withBearer(ctx, key), &tokenv1.CreateRequest{UserId: user, Name: "n"})
		return status.Code(err)
	}
	if got, got2 := create("acme-1"), create("bob"); got != codes.OK || got2 != codes.PermissionDenied {
		t.Fatalf("before the reload: acme-1 %v, bob %v; want OK and PermissionDenied", got, got2)
	}
	dir.Update(t, files("key:signup create bob\n"))
	c.signal(t, syscall.SIGHUP)
	if _, err := c.waitLine(10*time.Second, func(l string) bool {
		return strings.Contains(l, `"msg":"credentials reloaded"`) && strings.Contains(l, `"trigger":"SIGHUP"`) && strings.Contains(l, `"grants":1`)
	}); err != nil {
		t.Fatalf("no SIGHUP reload logged: %v", err)
	}
	if got, got2 := create("bob"), create("acme-1"); got != codes.OK || got2 != codes.PermissionDenied {
		t.Errorf("after SIGHUP: bob %v, acme-1 %v; want OK and PermissionDenied", got, got2)
	}
	if c.exited() {
		t.Fatalf("cbkgate exited after SIGHUP: %v", c.state)
	}
}
