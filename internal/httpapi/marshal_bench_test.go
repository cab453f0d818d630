package httpapi

// Micro-benchmarks of the gateway's JSON: decoding a Create body, encoding
// its answer, and encoding one line of a streamed List as
// runtime.ForwardResponseStream does. Run with:
// go test -run '^$' -bench . -benchmem ./internal/httpapi

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

func BenchmarkGatewayDecodeCreate(b *testing.B) {
	m := newMarshaler()
	body := []byte(`{"name":"bench","description":"created by cmd/bench","meta":{"team":"perf","env":"bench"}}`)
	b.ReportAllocs()
	for b.Loop() {
		var req tokenv1.CreateRequest
		if err := m.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGatewayEncodeCreate(b *testing.B) {
	m := newMarshaler()
	resp := &tokenv1.CreateResponse{Id: "tok_3kq9xv2a_1f4", Token: "Q2FDGUYBVJ6SQD5OQ7TSAFMTRG", CreateTime: timestamppb.New(time.UnixMilli(1763800000123))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGatewayEncodeListLine(b *testing.B) {
	m := newMarshaler()
	at := timestamppb.New(time.UnixMilli(1763800000123))
	meta, _ := structpb.NewStruct(map[string]any{"team": "platform", "env": "prod"})
	for name, tok := range map[string]*tokenv1.Token{
		"ids-only":  {Id: "tok_3kq9xv2a_1f4", CreateTime: at, UpdateTime: at},
		"with-meta": {Id: "tok_3kq9xv2a_1f4", Name: "ci token", Description: "created by the deploy pipeline", Meta: meta, CreateTime: at, UpdateTime: at},
	} {
		resp := &tokenv1.ListResponse{Token: tok, Cursor: "AAAAAAAAAGQ"}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				// What runtime.ForwardResponseStream marshals for each message.
				if _, err := m.Marshal(map[string]any{"result": resp}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
