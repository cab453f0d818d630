package auth

// Who may do what: the grants of --grants-file, and the interceptors that
// hold every TokenService call to them. Authentication (check.go) says who
// the caller is; this file says what that caller may do, and for which
// users. It is the one place that decides it.
//
// Without --grants-file every authenticated caller may do everything. With
// it, a call is allowed only when one line of the file names its caller,
// its method and its user_id; anything else is PERMISSION_DENIED before
// the service (and so ChatBotKit) is reached. The file is read and reloaded
// with the credential files (files.go, reload.go): a reload swaps the
// whole table, a file that fails to load changes nothing, and a call keeps
// the table it started with.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/cbkgate/cbkgate/internal/apierr"
)

// FlagGrantsFile is --grants-file, as Config.Source is asked about it.
const FlagGrantsFile = "grants-file"

// maxGrantsFile caps the grants file, as the keys file is capped.
const maxGrantsFile = maxAPIKeysFile

// method is one TokenService method as grants name it, a bit in a set.
type method uint8

const (
	methodList method = 1 << iota
	methodCreate
	methodUpdate
	methodDelete

	allMethods = methodList | methodCreate | methodUpdate | methodDelete
)

// methodNames are the METHODS words, and the values of the method label
// and ErrorInfo metadata.
var methodNames = map[string]method{"list": methodList, "create": methodCreate, "update": methodUpdate, "delete": methodDelete}

func (m method) String() string {
	for name, v := range methodNames {
		if v == m {
			return name
		}
	}
	return "unknown"
}

// grantedMethods maps every TokenService method to its grant method. A
// TokenService method missing here would be refused to every caller once
// a grants file is set (see grantFor), never allowed; a test holds this
// map to the generated service description.
var grantedMethods = map[string]method{
	"/cbkgate.token.v1.TokenService/List":   methodList,
	"/cbkgate.token.v1.TokenService/Create": methodCreate,
	"/cbkgate.token.v1.TokenService/Update": methodUpdate,
	"/cbkgate.token.v1.TokenService/Delete": methodDelete,
}

const tokenServicePrefix = "/cbkgate.token.v1.TokenService/"

// pattern is an IDENTITY or user id pattern: literal text between the
// wildcards, each `*` matching any run of characters, including none.
//
// It is not path.Match (nor filepath.Match): those give `/` and `[`, `?`
// and `\` meanings of their own, and a user id may hold any of them (over
// gRPC a user id can contain `/`, and a CN can contain anything), so an
// operator writing `acme/*` or `team[1]` must get exactly those
// characters. Here only `*` is special, and the %-escapes of the file are
// already decoded.
type pattern struct {
	// parts are the literal pieces between wildcards: one piece means no
	// wildcard at all (the pattern is the text itself).
	parts []string
}

// match reports whether the whole of s matches. With wildcards: the first
// piece is a prefix, the last a suffix, and the ones between are found in
// order, each as early as possible; taking the earliest occurrence never
// loses a match, since a later wildcard can absorb whatever an earlier
// choice left over.
func (p pattern) match(s string) bool {
	n := len(p.parts)
	if n == 1 {
		return s == p.parts[0]
	}
	if !strings.HasPrefix(s, p.parts[0]) {
		return false
	}
	s = s[len(p.parts[0]):]
	for _, mid := range p.parts[1 : n-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, p.parts[n-1])
}

// grant is one line of the grants file: IDENTITY METHODS USERS.
type grant struct {
	identity pattern
	methods  method
	users    []pattern
}

// grantTable is the whole grants file in force. A nil *grantTable means
// there is no grants file: everything is allowed.
type grantTable struct {
	grants []grant
}

// allows reports whether some grant matches caller, m and user.
func (t *grantTable) allows(caller string, m method, user string) bool {
	if t == nil {
		return true
	}
	for i := range t.grants {
		g := &t.grants[i]
		if g.methods&m == 0 || !g.identity.match(caller) {
			continue
		}
		for _, u := range g.users {
			if u.match(user) {
				return true
			}
		}
	}
	return false
}

func (t *grantTable) count() int {
	if t == nil {
		return 0
	}
	return len(t.grants)
}

// loadGrants reads and parses the grants file.
func loadGrants(src, path string) (*grantTable, error) {
	b, err := readCapped(path, maxGrantsFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", src, fileError(err))
	}
	return parseGrants(src, path, b)
}

// parseGrants reads the grants file: one grant per line, surrounding
// spaces and tabs trimmed, blank lines and lines starting with # ignored.
// A file with no grants is valid and allows nothing (an operator may lock
// every caller out, and a reload to such a file must not keep older,
// wider grants). Errors give the file, the line number and the field at
// fault, never the rest of the line.
func parseGrants(src, path string, b []byte) (*grantTable, error) {
	t := &grantTable{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.Trim(line, " \t\r")
		if line == "" || line[0] == '#' {
			continue
		}
		g, err := parseGrantLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %s line %d: %v", src, path, i+1, err)
		}
		t.grants = append(t.grants, g)
	}
	return t, nil
}

// grantSyntax is the line's form, for error messages.
const grantSyntax = "IDENTITY METHODS USERS, e.g. key:signup create,list acme-*"

func parseGrantLine(line string) (grant, error) {
	if !utf8.ValidString(line) {
		return grant{}, fmt.Errorf("the line is not valid UTF-8")
	}
	for _, r := range line {
		if r < ' ' && r != '\t' || r == 0x7f {
			return grant{}, fmt.Errorf("the line holds a control character")
		}
	}
	// Spaces and tabs only: any other character, Unicode spaces included,
	// can be part of a user id and is taken literally.
	fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(fields) != 3 {
		return grant{}, fmt.Errorf("%d fields where a grant is %s (a space in a name is %%20; comments need a line of their own)", len(fields), grantSyntax)
	}
	var g grant
	var err error
	if g.identity, err = parseIdentity(fields[0]); err != nil {
		return grant{}, fmt.Errorf("IDENTITY: %v", err)
	}
	if g.methods, err = parseMethods(fields[1]); err != nil {
		return grant{}, fmt.Errorf("METHODS: %v", err)
	}
	for _, u := range strings.Split(fields[2], ",") {
		p, err := parsePattern(u)
		if err != nil {
			return grant{}, fmt.Errorf("USERS: %v", err)
		}
		g.users = append(g.users, p)
	}
	return g, nil
}

// parseIdentity takes a caller identity pattern: key:NAME, cert:CN or
// anonymous (pass-through's bearer: identities never meet grants), or a
// pattern starting with `*`, which may match several kinds.
func parseIdentity(f string) (pattern, error) {
	switch {
	case f == anonymousCaller, strings.HasPrefix(f, "*"):
	case strings.HasPrefix(f, "key:") && len(f) > len("key:"),
		strings.HasPrefix(f, "cert:") && len(f) > len("cert:"):
	case f == "key:" || f == "cert:":
		return pattern{}, fmt.Errorf("%q names no one: write a name or a pattern after the colon", f)
	default:
		return pattern{}, fmt.Errorf("a caller is key:NAME, cert:CN, anonymous, or a pattern starting with * (a bare * is every caller)")
	}
	return parsePattern(f)
}

func parseMethods(f string) (method, error) {
	var set method
	for _, w := range strings.Split(f, ",") {
		if w == "*" {
			set |= allMethods
			continue
		}
		m, ok := methodNames[w]
		if !ok {
			if w == "" {
				return 0, fmt.Errorf("an empty method (two commas, or one at an end)")
			}
			return 0, fmt.Errorf("%q is not a method: use list, create, update, delete or *", clip(w))
		}
		set |= m
	}
	return set, nil
}

// parsePattern splits a field item at its wildcards and decodes the
// %-escapes of each piece. A raw `#` is refused rather than taken
// literally, so that "u1 # note" cannot be misread as a comment.
func parsePattern(f string) (pattern, error) {
	if f == "" {
		return pattern{}, fmt.Errorf("an empty pattern (two commas, or one at an end); * matches everyone")
	}
	if strings.Contains(f, "#") {
		return pattern{}, fmt.Errorf("a # inside a pattern must be written %%23 (comments need a line of their own)")
	}
	parts := strings.Split(f, "*")
	for i, p := range parts {
		var err error
		if parts[i], err = unescapeGrant(p); err != nil {
			return pattern{}, err
		}
	}
	return pattern{parts: parts}, nil
}

// grantEscapes are the only %-escapes: the characters the file's syntax
// would otherwise claim.
var grantEscapes = map[string]byte{"20": ' ', "2C": ',', "23": '#', "2A": '*', "25": '%'}

func unescapeGrant(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 > len(s) {
			return "", fmt.Errorf("a %% must start one of %%20 %%2C %%23 %%2A %%25 (a literal %% is %%25)")
		}
		c, ok := grantEscapes[strings.ToUpper(s[i+1:i+3])]
		if !ok {
			return "", fmt.Errorf("%q is not one of the escapes %%20 %%2C %%23 %%2A %%25 (a literal %% is %%25)", clip(s[i:i+3]))
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}

// clip shortens a word quoted in an error.
func clip(s string) string {
	const max = 32
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}

// checkGrants refuses --grants-file where it would mean nothing: in
// pass-through mode each caller holds ChatBotKit's secret itself and could
// call ChatBotKit directly, whatever cbkgate allowed.
func (c *Config) checkGrants(held bool) error {
	if c.GrantsFile != "" && !held {
		return fmt.Errorf("%s needs a held secret (%s or %s): without one each caller sends its own ChatBotKit secret and could use it directly, so grants would restrict nothing",
			c.source(FlagGrantsFile), EnvAPISecret, EnvAPISecretFile)
	}
	return nil
}

// LogGrants says once, at start, which policy holds: none (every
// authenticated caller may do everything), or how many grants from which
// file.
func (a *Authenticator) LogGrants(log *slog.Logger) {
	switch n := a.creds.Load().grants.count(); {
	case a.files.grantsFile == "":
		log.Info("no --grants-file: every authenticated caller may do everything")
	case n == 0:
		log.Warn("the grants file holds no grants: every call will be refused", "grants_file", a.files.grantsFile)
	default:
		log.Info("grants in force", "grants_file", a.files.grantsFile, "grants", n)
	}
}

// GrantsUnaryInterceptor holds Create, Update and Delete to the grants. Put
// it right after the authentication interceptor (it reads the caller), and
// after the logging interceptors, which then log and audit its refusals.
func (a *Authenticator) GrantsUnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if t := a.creds.Load().grants; t != nil {
			if err := t.check(ctx, info.FullMethod, req); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

// GrantsStreamInterceptor holds List to the grants. The user_id is in the
// request message, which a server stream's handler receives first: the
// check runs on that first message, before the handler can go upstream,
// with the table in force when the message arrives. (Not the one in force
// when the stream opened: a client may open a stream, wait, and send its
// message after a reload has revoked the grant it would have needed.)
func (a *Authenticator) GrantsStreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, tokenServicePrefix) {
			return handler(srv, ss)
		}
		return handler(srv, &grantedStream{ServerStream: ss, auth: a, method: info.FullMethod})
	}
}

// grantedStream checks the first message it receives.
type grantedStream struct {
	grpc.ServerStream
	auth    *Authenticator
	method  string
	checked bool
}

func (s *grantedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.checked {
		return nil
	}
	s.checked = true
	if t := s.auth.creds.Load().grants; t != nil {
		return t.check(s.Context(), s.method, m)
	}
	return nil
}

type userIDRequest interface{ GetUserId() string }

// check allows or refuses one call. Methods outside TokenService (health,
// reflection) are not the grants' business; a TokenService method the
// grants cannot name is refused.
func (t *grantTable) check(ctx context.Context, fullMethod string, req any) error {
	m, ok := grantedMethods[fullMethod]
	if !ok {
		if strings.HasPrefix(fullMethod, tokenServicePrefix) {
			return denied(0, Caller(ctx))
		}
		return nil
	}
	r, ok := req.(userIDRequest)
	caller := Caller(ctx)
	if ok && t.allows(caller, m, r.GetUserId()) {
		return nil
	}
	return denied(m, caller)
}

// denied is the PERMISSION_DENIED answer: the method and the caller in
// ErrorInfo metadata (the metric counts the method), the user id nowhere
// but in the caller's own request.
func denied(m method, caller string) error {
	verb := m.String()
	return apierr.WithMetadata(codes.PermissionDenied, apierr.ReasonPermissionDenied,
		fmt.Sprintf("%s may not %s tokens of this user: no grant allows it", caller, verb),
		map[string]string{"method": verb, "caller": caller})
}
