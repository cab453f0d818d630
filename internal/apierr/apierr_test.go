package apierr

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestNewCarriesErrorInfoFirst(t *testing.T) {
	err := New(codes.ResourceExhausted, ReasonRateLimited, "slow down",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(2e9)})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || st.Message() != "slow down" {
		t.Fatalf("status = %v %q", st.Code(), st.Message())
	}
	d := st.Details()
	if len(d) != 2 {
		t.Fatalf("details = %v, want ErrorInfo and RetryInfo", d)
	}
	info, ok := d[0].(*errdetails.ErrorInfo)
	if !ok || info.GetDomain() != "cbkgate" || info.GetReason() != "RATE_LIMITED" {
		t.Fatalf("first detail = %v, want ErrorInfo{cbkgate, RATE_LIMITED}", d[0])
	}
	if ri, ok := d[1].(*errdetails.RetryInfo); !ok || ri.GetRetryDelay().AsDuration() != 2e9 {
		t.Fatalf("second detail = %v, want RetryInfo 2s", d[1])
	}
}

func TestCodeForRefusal(t *testing.T) {
	for httpStatus, want := range map[int]codes.Code{
		400: codes.InvalidArgument, 413: codes.ResourceExhausted, 415: codes.InvalidArgument,
		401: codes.Unauthenticated, 403: codes.PermissionDenied, 404: codes.NotFound,
		405: codes.Unimplemented, 501: codes.Unimplemented, 429: codes.ResourceExhausted,
		503: codes.Unavailable, 504: codes.DeadlineExceeded, 408: codes.DeadlineExceeded,
		500: codes.Internal, 418: codes.Unknown,
	} {
		if got := CodeForRefusal(httpStatus); got != want {
			t.Errorf("CodeForRefusal(%d) = %v, want %v", httpStatus, got, want)
		}
	}
}
