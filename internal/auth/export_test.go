package auth

import (
	"crypto/sha256"
	"log/slog"
	"net"
	"net/http"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// Options builds an Authenticator in a given mode with given credentials
// directly, so that the interceptor and middleware tests need no files.
// Load is the only way in outside tests, and the combinations it refuses
// are tested there.
type Options struct {
	PassThrough          bool
	APIKeys              []secret.Value // bare keys, named as a bare line of the keys file would be
	AcceptClientCerts    bool
	AllowUnauthenticated bool
	HeldSecret           secret.Value
	TrustedPeer          func(net.Addr) bool
	OnHTTPRefused        func(*http.Request, string, string)
}

func New(o Options) (*Authenticator, error) {
	a := &Authenticator{
		passThrough:   o.PassThrough,
		allowAll:      !o.PassThrough && o.AllowUnauthenticated,
		acceptKeys:    !o.PassThrough && len(o.APIKeys) > 0,
		acceptCerts:   !o.PassThrough && o.AcceptClientCerts,
		trustedPeer:   o.TrustedPeer,
		onHTTPRefused: o.OnHTTPRefused,
		log:           slog.New(slog.DiscardHandler),
	}
	c := &credentials{secret: o.HeldSecret}
	for _, k := range o.APIKeys {
		c.keys = append(c.keys, apiKey{name: "key-" + fingerprint([]byte(k.Reveal())), digest: sha256.Sum256([]byte(k.Reveal()))})
	}
	a.creds.Store(c)
	return a, nil
}

// CertName is certName, for its fallbacks.
var CertName = certName
