package httpapi

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	"github.com/cbkgate/cbkgate/internal/apierr"
)

// Browser protection: cbkgate mints credentials, so a web page on another
// origin must not be able to make it act, with or without the user's
// credentials (dev mode and --allow-unauthenticated let anyone in, and a
// page needs no credentials for a "simple" request that skips the CORS
// preflight). Two rules, both before authentication and the gateway, so a
// refused request reaches no upstream:
//   - a cross-origin request whose Origin is not on --cors-origins is 403
//     (originGuard), on every path of the HTTP port: the API, Connect and
//     gRPC-Web, the OpenAPI document and the health probes alike;
//   - a POST or PATCH body is JSON or nothing: a type a browser may send
//     without a preflight (text/plain, multipart/form-data, a form) is 415
//     (requireJSONBody), except a form-encoded body with no Origin, which is
//     what `curl -d` sends and no browser does.

// originGuard is Go's http.CrossOriginProtection with the --cors-origins as
// trusted origins, applied to every method. Go's rule lets GET, HEAD and
// OPTIONS through because they should change nothing; here a GET List
// spends upstream requests and a preflight answers for the API, so a
// foreign origin is refused those too. nil means every origin is allowed
// (--cors-origins '*').
type originGuard struct {
	p *http.CrossOriginProtection
}

func newOriginGuard(origins []string) (*originGuard, error) {
	p := http.NewCrossOriginProtection()
	for _, o := range origins {
		if o == "*" {
			return nil, nil
		}
		if err := p.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("httpapi: CORS origin %q: %w", o, err)
		}
	}
	return &originGuard{p: p}, nil
}

func (g *originGuard) wrap(gw *runtime.ServeMux, m runtime.Marshaler, next http.Handler) http.Handler {
	if g == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probe := r
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			// Judge it as the unsafe method Go's rule does check; only the
			// method differs, and Check reads nothing but headers.
			probe = r.WithContext(r.Context())
			probe.Method = http.MethodPost
		}
		if err := g.p.Check(probe); err != nil {
			runtime.HTTPError(r.Context(), gw, m, w, r, &runtime.HTTPStatusError{
				HTTPStatus: http.StatusForbidden,
				Err: apierr.New(codes.PermissionDenied, apierr.ReasonCrossOrigin,
					"cross-origin request refused: the page's origin is not on --cors-origins"),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireJSONBody answers 415 for a POST or PATCH whose body type is not
// JSON: Content-Type application/json (parameters allowed), absent, or
// application/x-www-form-urlencoded on a request without an Origin header;
// and for one whose body is compressed (any Content-Encoding but identity).
func requireJSONBody(gw *runtime.ServeMux, m runtime.Marshaler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPost || r.Method == http.MethodPatch) && !jsonBody(r) {
			runtime.HTTPError(r.Context(), gw, m, w, r, &runtime.HTTPStatusError{
				HTTPStatus: http.StatusUnsupportedMediaType,
				Err: apierr.New(codes.InvalidArgument, apierr.ReasonUnsupportedMediaType,
					"unsupported Content-Type: send the body as application/json"),
			})
			return
		}
		if (r.Method == http.MethodPost || r.Method == http.MethodPatch) && encoded(r) {
			// The gateway would read the compressed bytes as JSON and call
			// them malformed (or, with a coding that changes nothing, act on
			// a body its client said was something else).
			runtime.HTTPError(r.Context(), gw, m, w, r, &runtime.HTTPStatusError{
				HTTPStatus: http.StatusUnsupportedMediaType,
				Err: apierr.New(codes.InvalidArgument, apierr.ReasonUnsupportedMediaType,
					"a compressed body (Content-Encoding) is not taken on this route: send the JSON uncompressed"),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// encoded reports whether the request says its body is compressed.
func encoded(r *http.Request) bool {
	for _, v := range r.Header.Values("Content-Encoding") {
		for _, coding := range strings.Split(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return true
			}
		}
	}
	return false
}

func jsonBody(r *http.Request) bool {
	cts := r.Header.Values("Content-Type")
	switch len(cts) {
	case 0:
		return true
	case 1:
	default:
		return false
	}
	mt, _, err := mime.ParseMediaType(cts[0])
	if err != nil {
		return false
	}
	switch mt {
	case "application/json":
		return true
	case "application/x-www-form-urlencoded":
		return r.Header.Get("Origin") == ""
	}
	return false
}
