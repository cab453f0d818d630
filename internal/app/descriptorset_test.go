package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// TestDescriptorSetDecodesErrorDetails: a client that holds only
// gen/cbkgate.binpb (no generated code, no registry of its own) can decode a
// real error of the server down to its details.
func TestDescriptorSetDecodesErrorDetails(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "gen", "cbkgate.binpb"))
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("the descriptor set does not stand alone: %v", err)
	}
	for _, name := range []protoreflect.FullName{
		"cbkgate.token.v1.TokenService", "google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.BadRequest",
		"google.rpc.RetryInfo", "google.rpc.QuotaFailure", "google.rpc.PreconditionFailure", "google.rpc.DebugInfo",
		"google.rpc.RequestInfo", "google.rpc.ResourceInfo", "google.rpc.Help", "google.rpc.LocalizedMessage",
	} {
		if _, err := files.FindDescriptorByName(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	const secret = "emu-secret-descriptorset"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	_, st := s.grpcCaller(bearer(secret)).list(t, &tokenv1.ListRequest{UserId: "..", PageSize: -1})
	wantCode(t, "list with two bad fields", st, codes.InvalidArgument)
	wire, err := proto.Marshal(st.Proto())
	if err != nil {
		t.Fatal(err)
	}

	statusDesc, _ := files.FindDescriptorByName("google.rpc.Status")
	decoded := dynamicpb.NewMessage(statusDesc.(protoreflect.MessageDescriptor))
	if err := proto.Unmarshal(wire, decoded); err != nil {
		t.Fatal(err)
	}
	// Only the set's own types resolve the Any details: nothing compiled in.
	types := dynamicpb.NewTypes(files)
	out, err := protojson.MarshalOptions{Resolver: types}.Marshal(decoded)
	if err != nil {
		t.Fatalf("details do not decode from the set alone: %v", err)
	}
	var got struct {
		Details []struct {
			Type            string `json:"@type"`
			Reason          string `json:"reason"`
			Domain          string `json:"domain"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Details) != 2 ||
		got.Details[0].Type != "type.googleapis.com/google.rpc.ErrorInfo" || got.Details[0].Reason != "INVALID_ARGUMENT" || got.Details[0].Domain != "cbkgate" ||
		got.Details[1].Type != "type.googleapis.com/google.rpc.BadRequest" || len(got.Details[1].FieldViolations) != 2 ||
		got.Details[1].FieldViolations[0].Field != "user_id" || got.Details[1].FieldViolations[1].Field != "page_size" {
		t.Fatalf("decoded status = %s", out)
	}
}
