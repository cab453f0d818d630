// Package testport picks loopback ports for the tests that must name a
// port before the process that listens on it starts (a child cbkgate, a
// balancer's configuration). Only tests import it.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Free returns a loopback port that was free a moment ago, chosen below
// the kernel's ephemeral range. A port the kernel handed out for a listen
// on :0 and that was then closed goes back into that range, where the
// next listen on :0 or the next outgoing connection may take it before
// the child binds it: a replica's HTTP port was taken so, and its start
// failed "address already in use". Below the range only another test
// choosing the same port at random can take it.
func Free(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use: try another
		}
		l.Close()
		return port
	}
	t.Fatal("testport: no free loopback port below the ephemeral range in 100 tries")
	return 0
}

// ephemeralLow is the lowest port of the kernel's ephemeral range (Linux's
// default, 32768, where it cannot be read).
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return fallback
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low <= 11000 {
		return fallback
	}
	return low
}
