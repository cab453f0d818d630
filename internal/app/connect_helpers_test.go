package app_test

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// connectCaller calls the Connect and gRPC-Web routes of the HTTP listener
// with connect-go's own client (its generic client over the generated
// messages; no generated Connect code), in the protocol and codec given.
type connectCaller struct {
	name    string
	authz   string // Authorization header; "" sends none
	header  http.Header
	lister  *connect.Client[tokenv1.ListRequest, tokenv1.ListResponse]
	creator *connect.Client[tokenv1.CreateRequest, tokenv1.CreateResponse]
	updater *connect.Client[tokenv1.UpdateRequest, tokenv1.UpdateResponse]
	deleter *connect.Client[tokenv1.DeleteRequest, tokenv1.DeleteResponse]
}

// connectCaller speaks Connect with JSON; grpcWebCaller gRPC-Web with
// binary protobuf: between them both protocols and both codecs.
func (s *server) connectCaller(authz string) *connectCaller {
	return s.newConnectCaller("connect", authz, connect.WithProtoJSON())
}

func (s *server) grpcWebCaller(authz string) *connectCaller {
	return s.newConnectCaller("grpcweb", authz, connect.WithGRPCWeb())
}

func (s *server) newConnectCaller(name, authz string, opts ...connect.ClientOption) *connectCaller {
	hc := s.HTTPClient(nil)
	base := s.URL() + "/cbkgate.token.v1.TokenService/"
	return &connectCaller{
		name:    name,
		authz:   authz,
		lister:  connect.NewClient[tokenv1.ListRequest, tokenv1.ListResponse](hc, base+"List", opts...),
		creator: connect.NewClient[tokenv1.CreateRequest, tokenv1.CreateResponse](hc, base+"Create", opts...),
		updater: connect.NewClient[tokenv1.UpdateRequest, tokenv1.UpdateResponse](hc, base+"Update", opts...),
		deleter: connect.NewClient[tokenv1.DeleteRequest, tokenv1.DeleteResponse](hc, base+"Delete", opts...),
	}
}

func (c *connectCaller) String() string { return c.name }

func (c *connectCaller) setHeaders(h http.Header) {
	if c.authz != "" {
		h.Set("Authorization", c.authz)
	}
	for k, vs := range c.header {
		h[k] = vs
	}
}

// connectStatus turns a connect-go error into the google.rpc.Status it
// carries, details included.
func connectStatus(t *testing.T, err error) *status.Status {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("not a Connect error: %v", err)
	}
	p := &spb.Status{Code: int32(ce.Code()), Message: ce.Message()}
	for _, d := range ce.Details() {
		p.Details = append(p.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
	}
	return status.FromProto(p)
}

func (c *connectCaller) list(t *testing.T, req *tokenv1.ListRequest) ([]*tokenv1.ListResponse, *status.Status) {
	r := connect.NewRequest(req)
	c.setHeaders(r.Header())
	stream, err := c.lister.CallServerStream(callCtx(t), r)
	if err != nil {
		return nil, connectStatus(t, err)
	}
	defer stream.Close()
	var out []*tokenv1.ListResponse
	for stream.Receive() {
		out = append(out, stream.Msg())
	}
	if err := stream.Err(); err != nil && !errors.Is(err, io.EOF) {
		return out, connectStatus(t, err)
	}
	return out, nil
}

func (c *connectCaller) create(t *testing.T, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, *status.Status) {
	r := connect.NewRequest(req)
	c.setHeaders(r.Header())
	resp, err := c.creator.CallUnary(callCtx(t), r)
	if err != nil {
		return nil, connectStatus(t, err)
	}
	return resp.Msg, nil
}

func (c *connectCaller) update(t *testing.T, req *tokenv1.UpdateRequest) (*tokenv1.UpdateResponse, *status.Status) {
	r := connect.NewRequest(req)
	c.setHeaders(r.Header())
	resp, err := c.updater.CallUnary(callCtx(t), r)
	if err != nil {
		return nil, connectStatus(t, err)
	}
	return resp.Msg, nil
}

func (c *connectCaller) delete(t *testing.T, req *tokenv1.DeleteRequest) (*tokenv1.DeleteResponse, *status.Status) {
	r := connect.NewRequest(req)
	c.setHeaders(r.Header())
	resp, err := c.deleter.CallUnary(callCtx(t), r)
	if err != nil {
		return nil, connectStatus(t, err)
	}
	return resp.Msg, nil
}
