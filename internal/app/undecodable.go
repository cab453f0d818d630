package app

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
)

// A TokenService request whose bytes are not protobuf (or not this
// method's request) is the client's fault. grpc-go answers it as its own:
// INTERNAL "grpc: failed to unmarshal the received message: proto: ...",
// a Go error's text with no ErrorInfo, sent the moment the message fails
// to decode, logged as a server fault, and HTTP 500 over Connect. The
// generated code decodes a unary call's message before it calls any
// interceptor, so such a call got no call line, metric or audit line
// either. Here it is a refusal like any other, on every surface (the HTTP
// port's protobuf bodies reach the same servers over the hop):
// INVALID_ARGUMENT with ErrorInfo, after authentication, through every
// interceptor.
//
// Faults grpc-go finds before a message reaches the codec (a message over
// maxRecvMsgBytes on the gRPC port, one cut short, a second one, a
// compressed one that does not inflate) it answers itself, without
// details, before any code of ours can; those calls still get their call
// line, with the code grpc-go sent, logged as the client's fault.

// requestCodec is grpc-go's protobuf codec, except that a TokenService
// request that does not decode is not an error to grpc-go: the message is
// noted in unreadable, and the code that asked for it (readErrorStream,
// undecodableFirst) answers the call with the refusal.
type requestCodec struct{ encoding.CodecV2 }

// unreadable maps a request message that did not decode to its refusal.
// The codec cannot see the call it decodes for, so the message itself is
// the key; whoever asked for the message takes the entry out as soon as
// RecvMsg returns, on the same goroutine, whether RecvMsg failed or not:
// grpc-go decodes a second message of a one-message call into the same
// request before it fails the call, and an entry left behind would keep
// that request (up to 1 MiB) for the life of the process.
var unreadable sync.Map

// serverCodec is the codec of both gRPC servers. Forcing one codec also
// stops grpc-go logging a warning for every call whose content-subtype
// names a codec it does not have (it used protobuf for them anyway).
func serverCodec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(requestCodec{encoding.GetCodecV2(protocodec.Name)})
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil || !isTokenRequest(v) {
		return err
	}
	unreadable.Store(v, apierr.WithLogDetail(apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument,
		"the request message is not valid protobuf for this method"), err.Error()))
	return nil
}

func isTokenRequest(v any) bool {
	switch v.(type) {
	case *tokenv1.ListRequest, *tokenv1.CreateRequest, *tokenv1.UpdateRequest, *tokenv1.DeleteRequest:
		return true
	}
	return false
}

// readError is the refusal for a message the codec noted as unreadable,
// or nil, taking the note out.
func readError(m any) error {
	if err, ok := unreadable.LoadAndDelete(m); ok {
		return err.(error)
	}
	return nil
}

// tokenServiceDesc is TokenService's description with each unary method
// wrapped by undecodableFirst.
func tokenServiceDesc() *grpc.ServiceDesc {
	desc := tokenv1.TokenService_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i, m := range desc.Methods {
		desc.Methods[i].Handler = undecodableFirst(desc.ServiceName, m.MethodName, m.Handler)
	}
	return &desc
}

// undecodableFirst wraps a generated unary handler. When the request does
// not decode, the generated handler returns before the interceptors; this
// one then runs them anyway, with an undecodableRequest in the request's
// place, which refuseUndecodableUnary answers once the caller is
// authenticated.
func undecodableFirst(service, method string, generated grpc.MethodHandler) grpc.MethodHandler {
	fullMethod := "/" + service + "/" + method
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		var decodeErr error
		resp, err := generated(srv, ctx, func(m any) error {
			decodeErr = clientFault(dec(m))
			if noted := readError(m); decodeErr == nil {
				decodeErr = noted
			}
			return decodeErr
		}, interceptor)
		if decodeErr == nil {
			return resp, err
		}
		req := undecodableRequest{err: decodeErr}
		if interceptor == nil {
			return nil, req.err
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}
		return interceptor(ctx, req, info, func(context.Context, any) (any, error) { return nil, req.err })
	}
}

// undecodableRequest stands for a unary request message that could not be
// read; err is the call's answer.
type undecodableRequest struct{ err error }

// refuseUndecodableUnary answers an undecodableRequest. It sits after
// authentication, so an unknown caller is still told UNAUTHENTICATED, and
// before the grants, which cannot judge a request whose user_id is unknown.
func refuseUndecodableUnary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r, ok := req.(undecodableRequest); ok {
			return nil, r.err
		}
		return handler(ctx, req)
	}
}

// refuseUndecodableStream does the same for the messages of a stream,
// which its handler receives itself, inside the interceptors.
func refuseUndecodableStream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, readErrorStream{ss})
	}
}

type readErrorStream struct{ grpc.ServerStream }

func (s readErrorStream) RecvMsg(m any) error {
	err := clientFault(s.ServerStream.RecvMsg(m))
	if noted := readError(m); err == nil {
		err = noted
	}
	return err
}

// clientFault marks grpc-go's INTERNAL answer to a request message it
// could not read as the client's doing (see apierr.ClientFault): reading a
// request, grpc-go fails INTERNAL only for the message itself (cut short,
// one too many, a compressed one that does not inflate). It has already
// sent that answer; the call line keeps its code.
func clientFault(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.Internal {
		return apierr.ClientFault(st)
	}
	return err
}
