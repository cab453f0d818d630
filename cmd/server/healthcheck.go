package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// healthcheckTimeout bounds one probe; Docker's own --timeout should be
// longer, so that a hung server reads as "unhealthy", not as a killed probe.
const healthcheckTimeout = 2 * time.Second

// healthcheck is `cbkgate healthcheck`: it asks the cbkgate running next to
// it (same container, same environment) whether it is ready, and exits 0 if
// GET /readyz answers 200, 1 otherwise (Docker reserves 2, so a usage error
// is 1 too). It exists for Docker's HEALTHCHECK:
// the image has no shell and no curl, so the binary probes itself.
//
// It finds the server the way the server found its address: --http-addr,
// else CBKGATE_HTTP_ADDR, else :8080; a wildcard host means loopback. With
// CBKGATE_TLS_CERT set (or --tls) it speaks HTTPS without verifying the
// certificate: it talks to its own process over loopback and sends nothing
// secret, and the certificate names a public host, not 127.0.0.1.
func healthcheck(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cbkgate healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http-addr", "", "the server's HTTP listen address (default $CBKGATE_HTTP_ADDR, else :8080)")
	useTLS := fs.Bool("tls", getenv("CBKGATE_TLS_CERT") != "", "speak HTTPS (default: whether CBKGATE_TLS_CERT is set)")
	path := fs.String("path", "/readyz", "the path to probe (/readyz: serving; /healthz: the process runs)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "cbkgate healthcheck: takes flags only")
		return 1
	}
	if *addr == "" {
		*addr = getenv("CBKGATE_HTTP_ADDR")
	}
	if *addr == "" {
		*addr = ":8080"
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "cbkgate healthcheck: http address %q: %v\n", *addr, err)
		return 1
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	tr := &http.Transport{DisableKeepAlives: true}
	if *useTLS {
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // see above: own process, loopback, no secret sent
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + *path

	ctx, cancel := context.WithTimeout(context.Background(), healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "cbkgate healthcheck: %v\n", err)
		return 1
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "cbkgate healthcheck: %s: %v\n", url, err)
		return 1
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "cbkgate healthcheck: %s: %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "cbkgate healthcheck: %s: %s\n", url, resp.Status)
	return 0
}

// runSubcommand runs a subcommand named by the first argument, if there is
// one; cbkgate itself takes flags only, so a first argument that does not
// start with "-" can only be a subcommand.
func runSubcommand(args []string) (code int, ok bool) {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], os.Getenv, os.Stdout, os.Stderr), true
	}
	return 0, false
}
