package chatbotkit

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ParseBaseURL checks an API base URL, the one rule for both Options.BaseURL
// and the server's --upstream: absolute http or https with a host and a
// numeric port if any, no userinfo, query or fragment. Trailing slashes are
// removed so that paths such as "/v1/..." can be appended. Errors quote the
// value only once it is known to hold no userinfo, so a password in it is
// never echoed.
func ParseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// The url.Error would quote the whole value, userinfo included;
		// keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a valid URL: %v", err)
	}
	if u.User != nil {
		// Credentials go in the Authorization header, never in the URL,
		// where they would travel into error strings and logs.
		return nil, errors.New("must not contain userinfo (user:password@)")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: must be an absolute http or https URL", raw)
	case u.Opaque != "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q: has no host", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "":
		return nil, fmt.Errorf("%q: must not have a query or fragment", raw)
	}
	if p := u.Port(); p != "" {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return nil, fmt.Errorf("%q: port is not a number from 0 to 65535", raw)
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}
