package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// adminAddr is --admin-addr: a listen address, or empty for none. In dev
// mode its default is on loopback (its devDef), like every listener's:
// metrics are for the one person trying cbkgate out.
func (in *input) adminAddr() (string, error) {
	if v, _, explicit := in.get(fAdminAddr); explicit && v == "" {
		return "", nil
	}
	return in.addr(fAdminAddr)
}

func (in *input) addr(name string) (string, error) {
	v, src, _ := in.get(name)
	if _, _, err := splitAddr(v); err != nil {
		return "", fmt.Errorf("%s: %q: %v", src, v, err)
	}
	return v, nil
}

// splitAddr checks a listen address: host:port with a numeric port. The host
// may be empty (all interfaces).
func splitAddr(v string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", 0, errors.New("not a host:port address: " + ae.Err)
		}
		return "", 0, errors.New("not a host:port address")
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return host, int(n), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// upstream is --upstream, under the REST client's own rule for a base URL.
func (in *input) upstream() (*url.URL, error) {
	v, src, _ := in.get(fUpstream)
	u, err := chatbotkit.ParseBaseURL(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return u, nil
}

func (in *input) logLevel() (slog.Level, error) {
	v, src, _ := in.get(fLogLevel)
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%s: %q: must be debug, info, warn or error", src, v)
}

func (in *input) logFormat() (LogFormat, error) {
	v, src, _ := in.get(fLogFormat)
	switch f := LogFormat(strings.ToLower(v)); f {
	case logJSON, logText:
		return f, nil
	}
	return "", fmt.Errorf("%s: %q: must be json or text", src, v)
}

func (in *input) shutdownTimeout() (time.Duration, error) {
	v, src, _ := in.get(fShutdownTimeout)
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: not a duration (like 20s or 1m30s)", src, v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: %q: must be greater than zero", src, v)
	}
	return d, nil
}

// maxConnectionAgeFloor keeps a typo such as "5ms" from making every client
// reconnect hundreds of times a second.
const maxConnectionAgeFloor = time.Second

func (in *input) maxConnectionAge() (time.Duration, error) {
	v, src, _ := in.get(fMaxConnAge)
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: not a duration (like 5m, or 0 for unlimited)", src, v)
	}
	if d != 0 && d < maxConnectionAgeFloor {
		return 0, fmt.Errorf("%s: %q: must be 0 (unlimited) or at least %s", src, v, maxConnectionAgeFloor)
	}
	return d, nil
}

// maxEmulatorLatency: a latency past this is a typo, not a network.
const maxEmulatorLatency = time.Minute

func (in *input) emulatorLatency() (time.Duration, error) {
	v, src, _ := in.get(fEmulatorLatency)
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxEmulatorLatency {
		return 0, fmt.Errorf("%s: %q: must be a duration from 0 to %s (like 50ms)", src, v, maxEmulatorLatency)
	}
	return d, nil
}

// maxCallerRate keeps 2n (the burst) far from overflowing and is beyond
// any quota ChatBotKit grants.
const maxCallerRate = 1_000_000

func (in *input) callerRate() (int, error) {
	v, src, _ := in.get(fCallerRate)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxCallerRate {
		return 0, fmt.Errorf("%s: %q: must be a whole number from 0 (no limit) to %d", src, v, maxCallerRate)
	}
	return n, nil
}

func (in *input) corsOrigins() ([]string, error) {
	v, src, _ := in.get(fCORSOrigins)
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if part == "*" {
			out = append(out, part)
			continue
		}
		o, err := checkOrigin(part)
		if err != nil {
			if strings.Contains(part, "@") {
				// May hold a user:password; say what is wrong without it.
				return nil, fmt.Errorf("%s: an entry with userinfo: %v", src, err)
			}
			return nil, fmt.Errorf("%s: %q: %v", src, part, err)
		}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	for _, o := range out {
		if o == "*" && len(out) > 1 {
			return nil, fmt.Errorf("%s: \"*\" cannot be combined with other origins", src)
		}
	}
	return out, nil
}

// checkOrigin accepts exactly what a browser sends in an Origin header,
// "scheme://host[:port]", and returns it lowercased as browsers send it.
// Anything more (a path, even a lone "/") would never match and is refused
// rather than silently never allowing anyone.
func checkOrigin(s string) (string, error) {
	if strings.Contains(s, "*") {
		return "", errors.New("a wildcard is only allowed as \"*\" alone")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.Host == "" {
		return "", errors.New("not scheme://host[:port]")
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(s, "#") {
		return "", errors.New("scheme://host[:port] only: no path (not even /), query, fragment or userinfo")
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", errors.New("port must be a number from 1 to 65535")
		}
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}
