package auth_test

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
)

// TestGrantMatching: which calls a grants file allows. Only `*` is a
// wildcard (any run of characters, none included); %20 %2C %23 %2A %25 are
// a space, a comma, a #, a literal * and a %; `/`, `[`, `?` and `.` are
// themselves (no path.Match semantics).
func TestGrantMatching(t *testing.T) {
	t.Parallel()
	type call struct {
		caller, method, user string
		want                 bool
	}
	cases := []struct {
		name  string
		file  string
		calls []call
	}{
		{"prefix", "key:signup create,list acme-*", []call{
			{"key:signup", "create", "acme-1", true},
			{"key:signup", "list", "acme-", true},
			{"key:signup", "create", "acme", false},
			{"key:signup", "create", "xacme-1", false},
			{"key:signup", "update", "acme-1", false},
			{"key:signup", "delete", "acme-1", false},
			{"key:signupx", "create", "acme-1", false},
			{"key:signu", "create", "acme-1", false},
		}},
		{"lists of users and methods", "key:ops update,delete u1,u2,team-*", []call{
			{"key:ops", "update", "u1", true},
			{"key:ops", "delete", "u2", true},
			{"key:ops", "delete", "team-x", true},
			{"key:ops", "update", "u3", false},
			{"key:ops", "list", "u1", false},
			{"key:ops", "create", "u1", false},
		}},
		{"every key, not certificates", "key:* list *", []call{
			{"key:a", "list", "anyone", true},
			{"key:", "list", "anyone", true},
			{"cert:a", "list", "anyone", false},
			{"anonymous", "list", "anyone", false},
			{"key:a", "create", "anyone", false},
		}},
		{"every caller, every method", "* * *", []call{
			{"key:a", "create", "u", true},
			{"cert:Jane Doe", "delete", "", true},
			{"anonymous", "update", "x/y", true},
		}},
		{"escapes", "cert:Jane%20Doe%2C%20Ops list a%2Cb,%23x,100%25,star%2A,sp%20ace", []call{
			{"cert:Jane Doe, Ops", "list", "a,b", true},
			{"cert:Jane Doe, Ops", "list", "#x", true},
			{"cert:Jane Doe, Ops", "list", "100%", true},
			{"cert:Jane Doe, Ops", "list", "star*", true},
			{"cert:Jane Doe, Ops", "list", "starX", false},
			{"cert:Jane Doe, Ops", "list", "star", false},
			{"cert:Jane Doe, Ops", "list", "sp ace", true},
			{"cert:Jane%20Doe%2C%20Ops", "list", "a,b", false},
			{"cert:Jane Doe, Ops", "list", "a", false},
		}},
		{"lowercase escapes", "cert:a%2cb list %2a", []call{
			{"cert:a,b", "list", "*", true},
			{"cert:a,b", "list", "x", false},
		}},
		{"slash, brackets, ? and . are literal", "key:k list team/[1]*,u?,a.b,x\\y", []call{
			{"key:k", "list", "team/[1]/alice", true},
			{"key:k", "list", "team/1/alice", false},
			{"key:k", "list", "team/[2]/alice", false},
			{"key:k", "list", "u?", true},
			{"key:k", "list", "u1", false},
			{"key:k", "list", "a.b", true},
			{"key:k", "list", "aXb", false},
			{"key:k", "list", "x\\y", true},
			{"key:k", "list", "xy", false},
		}},
		{"wildcards inside", "*:a*b*c list *-*-*", []call{
			{"key:abc", "list", "--", true},
			{"cert:aXbYc", "list", "1-2-3", true},
			{"key:abcbc", "list", "a-b-c-d", true},
			{"key:acb", "list", "1-2-3", false},
			{"key:abcX", "list", "1-2-3", false},
			{"key:abc", "list", "1-2", false},
		}},
		{"unicode is literal", "cert:Zoë list ü*,a\u00a0b", []call{
			{"cert:Zoë", "list", "über", true},
			{"cert:Zoe", "list", "über", false},
			{"cert:Zoë", "list", "a\u00a0b", true},
			{"cert:Zoë", "list", "a b", false},
		}},
		{"several lines, comments, anonymous", "# readers\n\nkey:reader list *\r\n  anonymous\tlist,create\tpublic-*  \n# admins\nkey:admin * *\n", []call{
			{"key:reader", "list", "u", true},
			{"key:reader", "create", "u", false},
			{"anonymous", "create", "public-1", true},
			{"anonymous", "delete", "public-1", false},
			{"key:admin", "delete", "u", true},
		}},
		{"no grants: nothing allowed", "# nobody\n\n", []call{
			{"key:admin", "list", "u", false},
			{"anonymous", "create", "u", false},
		}},
	}
	for _, tc := range cases {
		allows, err := auth.Allows(tc.file)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, c := range tc.calls {
			if got := allows(c.caller, c.method, c.user); got != c.want {
				t.Errorf("%s: %s %s %q: allowed %v, want %v", tc.name, c.caller, c.method, c.user, got, c.want)
			}
		}
	}
}

// TestGrantsFileErrors: a bad line fails with the file, the line number
// and what is wrong with which field, and never the rest of the line.
func TestGrantsFileErrors(t *testing.T) {
	t.Parallel()
	const other = "Xq9-unrelated" // in a field that is fine: must never show
	cases := []struct {
		name, line string
		want       []string
	}{
		{"two fields", "key:" + other + " list", []string{"2 fields", "IDENTITY METHODS USERS"}},
		{"trailing comment", "key:" + other + " list u1 # trailing comment", []string{"6 fields", "comments need a line of their own"}},
		{"unknown method", "key:" + other + " lst u1", []string{"METHODS", `"lst" is not a method`}},
		{"upper-case method", "key:" + other + " LIST u1", []string{"METHODS", `"LIST" is not a method`}},
		{"empty method", "key:" + other + " list,,create u1", []string{"METHODS", "empty method"}},
		{"empty user pattern", "key:" + other + " list u1,", []string{"USERS", "empty pattern"}},
		{"bad identity kind", "bearer:abcd list " + other, []string{"IDENTITY", "key:NAME, cert:CN, anonymous"}},
		{"bare name", "signup list " + other, []string{"IDENTITY", "key:NAME"}},
		{"empty key name", "key: list " + other, []string{"IDENTITY", "names no one"}},
		{"bad escape", "key:" + other + " list u%41", []string{"USERS", `"%41" is not one of the escapes`}},
		{"cut escape", "cert:a%2 list " + other, []string{"IDENTITY", "a % must start one of"}},
		{"raw hash", "key:" + other + " list u#1", []string{"USERS", "%23"}},
		{"control character", "key:" + other + " list u\x01", []string{"control character"}},
		{"not UTF-8", "key:" + other + " list u\xff", []string{"not valid UTF-8"}},
	}
	for _, tc := range cases {
		file := "# header\n\nkey:fine list *\n" + tc.line + "\nkey:after list *\n"
		_, err := auth.Allows(file)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		msg := err.Error()
		for _, w := range append([]string{"--grants-file: grants line 4: "}, tc.want...) {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q lacks %q", tc.name, msg, w)
			}
		}
		if strings.Contains(msg, other) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q echoes more than the field at fault", tc.name, msg)
		}
	}
}

// TestGrantedMethodsCoverTokenService: every TokenService method has a
// grant method, so none can slip past the grants (a method missing from
// the map would be refused to everyone; this keeps that from happening
// unnoticed too).
func TestGrantedMethodsCoverTokenService(t *testing.T) {
	t.Parallel()
	got := auth.GrantedMethods()
	want := map[string]string{}
	desc := tokenv1.TokenService_ServiceDesc
	for _, m := range desc.Methods {
		want["/"+desc.ServiceName+"/"+m.MethodName] = strings.ToLower(m.MethodName)
	}
	for _, s := range desc.Streams {
		want["/"+desc.ServiceName+"/"+s.StreamName] = strings.ToLower(s.StreamName)
	}
	if len(got) != len(want) {
		t.Errorf("grants name %v, the service has %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: grant method %q, want %q", k, got[k], v)
		}
	}
}

// startGranted serves the token service with the authenticator's
// authentication and grants interceptors, in the server's order.
func startGranted(t *testing.T, a *auth.Authenticator) (tokenv1.TokenServiceClient, *tokenServer) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor(), a.GrantsUnaryInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamInterceptor(), a.GrantsStreamInterceptor()),
	)
	ts := &tokenServer{}
	tokenv1.RegisterTokenServiceServer(s, ts)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return dial(t, lis.Addr().String(), nil).tokens(), ts
}

// deniedInfo checks err is the grants' PERMISSION_DENIED and returns its
// ErrorInfo.
func deniedInfo(t *testing.T, what string, err error) *errdetails.ErrorInfo {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied {
		t.Fatalf("%s: %v, want PERMISSION_DENIED", what, err)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	t.Fatalf("%s: no ErrorInfo", what)
	return nil
}

// TestGrantsLoadErrors: --grants-file through config.Load and auth.Load:
// a bad line fails the start naming the setting, file and line; a missing
// file is named; pass-through refuses grants.
func TestGrantsLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad", "key:a list *\n\nkey:b lsit *\n")
	_, err := load(t, []string{"--grants-file", bad}, held()...)
	if err == nil || !strings.Contains(err.Error(), "--grants-file: "+bad+" line 3: METHODS") {
		t.Errorf("bad line: %v", err)
	}
	_, err = load(t, nil, held("CBKGATE_GRANTS_FILE", bad)...)
	if err == nil || !strings.Contains(err.Error(), "CBKGATE_GRANTS_FILE: "+bad+" line 3") {
		t.Errorf("bad line from the environment: %v", err)
	}
	_, err = load(t, []string{"--grants-file", filepath.Join(dir, "missing")}, held()...)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}

	grants := writeFile(t, dir, "grants", "anonymous create,list u1\n")
	_, err = load(t, []string{"--grants-file", grants})
	if err == nil || !strings.Contains(err.Error(), "--grants-file needs a held secret") {
		t.Errorf("pass-through with grants: %v", err)
	}
}

// TestGrantsEnforced: a loaded grants file is enforced on unary calls and
// on List's first message, a refusal (PERMISSION_DENIED with method and
// caller) never reaching the service; a reload swaps the grants whole, and
// a broken file keeps the previous ones.
func TestGrantsEnforced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	grants := writeFile(t, dir, "grants", "anonymous create,list u1\n")
	a := mustLoad(t, []string{"--grants-file", grants}, held()...)
	c, ts := startGranted(t, a)
	create := func(user string) error {
		_, err := c.Create(callCtx(t), &tokenv1.CreateRequest{UserId: user})
		return err
	}
	list := func(user string) error {
		stream, err := c.List(callCtx(t), &tokenv1.ListRequest{UserId: user})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
	}
	if err := create("u1"); err != nil {
		t.Errorf("granted create: %v", err)
	}
	if err := list("u1"); err != nil {
		t.Errorf("granted list: %v", err)
	}
	info := deniedInfo(t, "create for u2", create("u2"))
	if info.GetReason() != "PERMISSION_DENIED" || info.GetDomain() != "cbkgate" ||
		info.GetMetadata()["method"] != "create" || info.GetMetadata()["caller"] != "anonymous" {
		t.Errorf("refusal's ErrorInfo %v", info)
	}
	if info := deniedInfo(t, "list of u2", list("u2")); info.GetMetadata()["method"] != "list" {
		t.Errorf("list refusal's ErrorInfo %v", info)
	}
	_, err := c.Delete(callCtx(t), &tokenv1.DeleteRequest{UserId: "u1", TokenId: "t"})
	if info := deniedInfo(t, "delete", err); info.GetMetadata()["method"] != "delete" {
		t.Errorf("delete refusal's ErrorInfo %v", info)
	}
	if n := len(ts.seen()); n != 2 {
		t.Errorf("the service saw %d calls, want the 2 granted ones", n)
	}

	// A reload swaps the grants whole; a broken file changes nothing.
	writeFile(t, dir, "grants", "anonymous create u2\n")
	if err := a.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if err := create("u2"); err != nil {
		t.Errorf("create for u2 after the reload: %v", err)
	}
	deniedInfo(t, "create for u1 after the reload", create("u1"))
	writeFile(t, dir, "grants", "anonymous create *\nanonymous nope u1\n")
	if err := a.Reload("test"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("reload of a broken file: %v", err)
	}
	deniedInfo(t, "create for u3 after a failed reload", create("u3"))
	if err := create("u2"); err != nil {
		t.Errorf("create for u2 after a failed reload: %v", err)
	}
}

// BenchmarkGrants50Lines: the decision for a call only the last of 50
// lines allows, every line before it matching caller and method but none
// of its three user patterns (cmd/bench's grants file; there, the figure
// that counts is CPU per Create with and without the file).
func BenchmarkGrants50Lines(b *testing.B) {
	var file strings.Builder
	for i := range 49 {
		fmt.Fprintf(&file, "* create,list tenant-%02d-*,partner-%02d,*-suspended-%02d\n", i, i, i)
	}
	file.WriteString("anonymous create,list bench-create\n")
	allows, err := auth.Allows(file.String())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !allows("anonymous", "create", "bench-create") {
			b.Fatal("refused")
		}
	}
}
