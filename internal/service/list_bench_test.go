package service

import (
	"io"
	"testing"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
)

// BenchmarkListStream: one List of 10,000 seeded tokens over real gRPC
// from the emulator over loopback HTTP, per iteration (emulator, service
// and client in one process: for -cpuprofile).
func BenchmarkListStream(b *testing.B) {
	emu := emulator.New(emulator.Options{Secret: emulatorSecret})
	emu.Seed("u", 10_000)
	c, _ := newTestService(b, emu)
	b.ResetTimer()
	for range b.N {
		stream, err := c.List(b.Context(), &tokenv1.ListRequest{UserId: "u"})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 10_000 {
			b.Fatalf("%d tokens", n)
		}
	}
}
