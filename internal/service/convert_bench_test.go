package service

// Micro-benchmarks of building the proto messages: a listed token into a
// ListResponse and its wire bytes, and a CreateRequest into the upstream
// body. Run with: go test -run '^$' -bench . -benchmem ./internal/service

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

func benchTokens() map[string]chatbotkit.Token {
	at := time.UnixMilli(1763800000123).UTC()
	return map[string]chatbotkit.Token{
		"ids-only": {ID: "tok_3kq9xv2a_1f4", CreatedAt: at, UpdatedAt: at},
		"with-meta": {ID: "tok_3kq9xv2a_1f4", Name: "ci token", Description: "created by the deploy pipeline",
			Meta: []byte(`{"team":"platform","env":"prod","owner":"alice@example.com"}`), CreatedAt: at, UpdatedAt: at},
	}
}

// BenchmarkListPage builds the ListResponses of a page of 100 listed
// tokens as List does, and marshals each as gRPC does before sending it.
func BenchmarkListPage(b *testing.B) {
	for name, tok := range benchTokens() {
		page := make([]chatbotkit.Token, 100)
		for i := range page {
			page[i] = tok
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resps := make([]tokenv1.ListResponse, len(page))
				toks := make([]tokenv1.Token, len(page))
				times := make([][2]timestamppb.Timestamp, len(page))
				for i := range page {
					resps[i].Token = &toks[i]
					if err := setToken(resps[i].Token, &times[i], &page[i]); err != nil {
						b.Fatal(err)
					}
					if _, err := proto.Marshal(&resps[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(page)), "ns/token")
		})
	}
}

// BenchmarkCreateInput turns a CreateRequest's fields into the upstream's.
func BenchmarkCreateInput(b *testing.B) {
	meta, _ := structpb.NewStruct(map[string]any{"team": "perf", "env": "bench"})
	req := &tokenv1.CreateRequest{UserId: "u", Name: "bench", Description: "created by cmd/bench", Meta: meta}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tokenInput(optional(req.GetName()), optional(req.GetDescription()), req.GetConfig(), req.GetMeta()); err != nil {
			b.Fatal(err)
		}
	}
}
