package telemetry

import (
	"context"
	"net/http"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// ConnectHopAuthority is the :authority of the in-process hop that carries
// Connect and gRPC-Web calls to the gRPC server (internal/connectapi); the
// JSON gateway's hop has another. Only in-process peers are trusted to
// have come over HTTP, so no network caller can pass for either.
const ConnectHopAuthority = "cbkgate-grpc"

// httpRoute is the HTTP method and route pattern of a call.
type httpRoute struct{ method, route string }

// gatewayRoutes are the HTTP bindings of TokenService's methods, read from
// the proto's google.api.http options: a JSON gateway call of a method
// (a REST call, or a List as Server-Sent Events) is a request to exactly
// that method and route pattern, so the gRPC call line can name them
// without either crossing the in-process hop on every call.
var gatewayRoutes = restBindings(tokenv1.File_cbkgate_token_v1_token_service_proto.Services().ByName("TokenService").Methods())

func restBindings(methods protoreflect.MethodDescriptors) map[string]httpRoute {
	out := make(map[string]httpRoute, methods.Len())
	for i := range methods.Len() {
		m := methods.Get(i)
		opts, _ := m.Options().(*descriptorpb.MethodOptions)
		rule, _ := proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
		var r httpRoute
		switch p := rule.GetPattern().(type) {
		case *annotations.HttpRule_Get:
			r = httpRoute{http.MethodGet, p.Get}
		case *annotations.HttpRule_Post:
			r = httpRoute{http.MethodPost, p.Post}
		case *annotations.HttpRule_Put:
			r = httpRoute{http.MethodPut, p.Put}
		case *annotations.HttpRule_Patch:
			r = httpRoute{http.MethodPatch, p.Patch}
		case *annotations.HttpRule_Delete:
			r = httpRoute{http.MethodDelete, p.Delete}
		default:
			continue
		}
		out["/"+string(m.Parent().FullName())+"/"+string(m.Name())] = r
	}
	return out
}

// GatewayRoute returns the HTTP method and route pattern of a gRPC call
// that came over HTTP through cbkgate itself (the caller has checked that
// its peer is the in-process one): a Connect or gRPC-Web call is a POST to
// the method's own path, a JSON gateway call the method's HTTP binding.
// ok is false when neither applies.
func GatewayRoute(ctx context.Context, fullMethod string) (method, route string, ok bool) {
	if a := metadata.ValueFromIncomingContext(ctx, ":authority"); len(a) == 1 && a[0] == ConnectHopAuthority {
		if !fixedRoutes[fullMethod] {
			return "", "", false
		}
		return http.MethodPost, fullMethod, true
	}
	r, ok := gatewayRoutes[fullMethod]
	return r.method, r.route, ok
}
