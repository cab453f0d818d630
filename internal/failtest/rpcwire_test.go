package failtest

// Raw requests to the RPC paths of the HTTP port (Connect, gRPC-Web) and to
// the gRPC port, and their answers read back as a google.rpc.Status. The
// attacks send bodies no well-behaved client library would build (a
// compressed message that inflates to hundreds of MiB, JSON that does not
// parse), so they go over plain net/http rather than connect-go or grpc-go.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const rpcPrefix = "/cbkgate.token.v1.TokenService/"

// rpcResult is one answer on an RPC path.
type rpcResult struct {
	status int
	header http.Header
	body   []byte
	st     *status.Status // the call's final status; nil when it succeeded
}

// envelope frames one message as the Connect streaming, gRPC-Web and gRPC
// protocols do: a flags byte and a 4-byte big-endian length.
func envelope(flags byte, payload []byte) []byte {
	out := make([]byte, 5, 5+len(payload))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	return append(out, payload...)
}

// gzipped is b compressed.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// gzipBomb is the gzip of prefix, n bytes of 'a' and suffix, written in
// pieces so that the test never holds the inflated bytes itself (its heap
// is the server's: cbkgate runs in this process).
func gzipBomb(prefix []byte, n int, suffix []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(prefix)
	chunk := bytes.Repeat([]byte{'a'}, 64<<10)
	for left := n; left > 0; left -= len(chunk) {
		_, _ = zw.Write(chunk[:min(left, len(chunk))])
	}
	_, _ = zw.Write(suffix)
	_ = zw.Close()
	return buf.Bytes()
}

// postRPC sends body to the RPC path of method on the HTTP port with the
// given headers and reads the whole answer; st is decoded for the protocol
// the answer's Content-Type names (Connect unary, Connect streaming,
// gRPC-Web).
func (g *gate) postRPC(method string, header map[string]string, body []byte) rpcResult {
	t := g.t
	t.Helper()
	req, err := http.NewRequestWithContext(g.ctx(), http.MethodPost, g.URL()+rpcPrefix+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return readRPC(t, g.hc, req)
}

func readRPC(t *testing.T, hc *http.Client, req *http.Request) rpcResult {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", req.URL.Path, err)
	}
	res := rpcResult{status: resp.StatusCode, header: resp.Header, body: b}
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc"): // gRPC-Web and gRPC
		res.st = grpcStatus(t, resp.Header, resp.Trailer, b)
	case strings.HasPrefix(ct, "application/connect+"):
		res.st = connectStreamStatus(t, b)
	case resp.StatusCode != http.StatusOK:
		res.st = connectErrorStatus(t, b)
	}
	return res
}

// wireError is Connect's error JSON: details carry their type's full name
// and the value as base64.
type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"details"`
}

func (e *wireError) status(t *testing.T) *status.Status {
	t.Helper()
	var code connect.Code
	if err := code.UnmarshalText([]byte(e.Code)); err != nil {
		t.Fatalf("Connect error code %q: %v", e.Code, err)
	}
	p := &spb.Status{Code: int32(code), Message: e.Message}
	for _, d := range e.Details {
		v, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		if err != nil {
			t.Fatalf("Connect error detail %s: %v", d.Type, err)
		}
		p.Details = append(p.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type, Value: v})
	}
	return status.FromProto(p)
}

// connectErrorStatus decodes a Connect unary error body.
func connectErrorStatus(t *testing.T, b []byte) *status.Status {
	t.Helper()
	var e wireError
	if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
		t.Fatalf("not a Connect error JSON (%v): %.300s", err, b)
	}
	return e.status(t)
}

// connectStreamStatus reads a Connect streaming answer to its end-stream
// message and returns its error (nil when the call succeeded).
func connectStreamStatus(t *testing.T, b []byte) *status.Status {
	t.Helper()
	for len(b) >= 5 {
		flags, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			break
		}
		payload := b[5 : 5+n]
		b = b[5+n:]
		if flags&0x02 == 0 {
			continue
		}
		var end struct {
			Error *wireError `json:"error"`
		}
		if err := json.Unmarshal(payload, &end); err != nil {
			t.Fatalf("Connect end-stream message (%v): %.300s", err, payload)
		}
		if end.Error == nil {
			return nil
		}
		return end.Error.status(t)
	}
	t.Fatalf("Connect stream without an end-stream message: %.300q", b)
	return nil
}

// grpcStatus reads the status of a gRPC-Web answer (trailers in the
// headers, or in the body's trailer frame) or of a gRPC one (HTTP
// trailers); nil when it is OK.
func grpcStatus(t *testing.T, header, trailer http.Header, b []byte) *status.Status {
	t.Helper()
	fields := header
	if header.Get("Grpc-Status") == "" {
		fields = trailer
	}
	for len(b) >= 5 && fields.Get("Grpc-Status") == "" {
		flags, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			break
		}
		if flags&0x80 != 0 {
			fields = http.Header{}
			for _, line := range strings.Split(string(b[5:5+n]), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok {
					fields.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v))
				}
			}
		}
		b = b[5+n:]
	}
	code := fields.Get("Grpc-Status")
	if code == "" {
		t.Fatalf("no grpc-status in the answer (headers %v)", header)
	}
	if code == "0" {
		return nil
	}
	if bin := fields.Get("Grpc-Status-Details-Bin"); bin != "" {
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(bin, "="))
		if err != nil {
			t.Fatalf("grpc-status-details-bin: %v", err)
		}
		var p spb.Status
		if err := proto.Unmarshal(raw, &p); err != nil {
			t.Fatalf("grpc-status-details-bin: %v", err)
		}
		return status.FromProto(&p)
	}
	n, _ := strconv.Atoi(code)
	return status.FromProto(&spb.Status{Code: int32(n), Message: fields.Get("Grpc-Message")})
}

// grpcPortClient speaks HTTP/2 without TLS to the gRPC port, to send it a
// gRPC request byte by byte.
func grpcPortClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// postGRPCPort sends one gRPC request (body already framed) to the gRPC port.
func (g *gate) postGRPCPort(hc *http.Client, method string, header map[string]string, body []byte) rpcResult {
	t := g.t
	t.Helper()
	req, err := http.NewRequestWithContext(g.ctx(), http.MethodPost, "http://"+g.GRPCAddr()+rpcPrefix+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return readRPC(t, hc, req)
}
