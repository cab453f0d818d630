package httpapi

import (
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/connectapi"
	"github.com/cbkgate/cbkgate/internal/telemetry"
)

// The router's refusals. Every answer on the HTTP port is a JSON
// google.rpc.Status with cbkgate's ErrorInfo, the router's too: an unknown
// path is 404 NOT_FOUND, a known path with another method 405
// METHOD_NOT_ALLOWED (with Allow), whether the path is a REST route, a
// Connect or gRPC-Web method, a health probe or the OpenAPI document.

// The REST route patterns (telemetry names them the same in metrics).
const (
	routeTokens = telemetry.RouteTokens
	routeToken  = telemetry.RouteToken
)

// restRoute is the REST route pattern of an escaped path, or "".
func restRoute(p string) string {
	rest, ok := strings.CutPrefix(p, "/v1/users/")
	if !ok {
		return ""
	}
	user, rest, _ := strings.Cut(rest, "/")
	switch {
	case user == "":
		return ""
	case rest == "tokens":
		return routeTokens
	}
	if token, ok := strings.CutPrefix(rest, "tokens/"); ok && token != "" && !strings.Contains(token, "/") {
		return routeToken
	}
	return ""
}

// restAllow is the Allow header of a REST route: what the proto's HTTP
// bindings serve there (the gateway serves no HEAD).
var restAllow = map[string]string{
	routeTokens: "GET, POST",
	routeToken:  "PATCH, DELETE",
}

// rpcMethods are the Connect and gRPC-Web paths.
var rpcMethods = map[string]bool{
	connectapi.Prefix + "List":   true,
	connectapi.Prefix + "Create": true,
	connectapi.Prefix + "Update": true,
	connectapi.Prefix + "Delete": true,
}

// router answers the refusals of the router in the API's error shape.
type router struct {
	gw *runtime.ServeMux
	m  runtime.Marshaler
}

// refuse writes err (a status error) as the JSON google.rpc.Status answer
// with httpStatus.
func (rt router) refuse(w http.ResponseWriter, r *http.Request, httpStatus int, err error) {
	runtime.HTTPError(r.Context(), rt.gw, rt.m, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: err})
}

func (rt router) notFound(w http.ResponseWriter, r *http.Request) {
	rt.refuse(w, r, http.StatusNotFound, notFoundError())
}

func notFoundError() error {
	return apierr.New(codes.NotFound, apierr.ReasonNotFound, "no such path on this server")
}

func (rt router) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	rt.refuse(w, r, http.StatusMethodNotAllowed, methodNotAllowedError(allow))
}

func methodNotAllowedError(allow string) error {
	return apierr.New(codes.Unimplemented, apierr.ReasonMethodNotAllowed, "this path does not take that method; it takes "+allow)
}

// only answers 405 for any method but the ones allow names ("GET" stands
// for HEAD too).
func (rt router) only(allow string, next http.HandlerFunc) http.Handler {
	methods := strings.Split(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
				next(w, r)
				return
			}
		}
		rt.methodNotAllowed(w, r, allow)
	})
}

// rpcRoutes answers an unknown method under the Connect prefix with 404 and
// a method other than POST with 405, before authentication: vanguard would
// answer both with a bare text 404. (No TokenService method is marked free
// of side effects, so none is served by Connect's GET.)
func (rt router) rpcRoutes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !rpcMethods[r.URL.Path]:
			rt.notFound(w, r)
		case r.Method != http.MethodPost:
			rt.methodNotAllowed(w, r, http.MethodPost)
		default:
			next.ServeHTTP(w, r)
		}
	})
}
