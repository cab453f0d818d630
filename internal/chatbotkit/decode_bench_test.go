package chatbotkit

// Micro-benchmarks of decoding what the upstream sends, per page. Run with: go test -run '^$' -bench . -benchmem ./internal/chatbotkit

import (
	"fmt"
	"strings"
	"testing"
)

// benchItem is one listed token as ChatBotKit sends it: seeded tokens carry
// only ids and times, tokens made by a partner usually a name, a
// description and some meta too.
func benchItem(i int, rich bool) string {
	if !rich {
		return fmt.Sprintf(`{"id":"tok_3kq9xv2a_%x","createdAt":1763800000%03d,"updatedAt":1763800000%03d}`, i+1000, i%1000, i%1000)
	}
	return fmt.Sprintf(`{"id":"tok_3kq9xv2a_%x","name":"ci token %d","description":"created by the deploy pipeline","meta":{"team":"platform","env":"prod","owner":"alice@example.com"},"createdAt":1763800000%03d,"updatedAt":1763800001%03d}`,
		i+1000, i, i%1000, i%1000)
}

func benchPage(n int, rich bool) []byte {
	items := make([]string, n)
	for i := range items {
		items[i] = benchItem(i, rich)
	}
	return []byte(`{"items":[` + strings.Join(items, ",") + `],"cursor":"AAAAAAAAAGQ"}`)
}

// BenchmarkDecodePage decodes a full page of 100 tokens.
func BenchmarkDecodePage(b *testing.B) {
	for _, rich := range []bool{false, true} {
		body := benchPage(100, rich)
		b.Run(map[bool]string{false: "ids-only", true: "with-meta"}[rich], func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				p, err := decodePage(body, 100)
				if err != nil || len(p.Items) != 100 {
					b.Fatal(len(p.Items), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/token")
		})
	}
}
