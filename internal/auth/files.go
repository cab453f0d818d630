package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// Size caps for credential files, so that pointing a setting at a huge file
// or a device fails instead of exhausting memory.
const (
	maxSecretFile  = 64 << 10
	maxAPIKeysFile = 4 << 20
	maxPEMFile     = 1 << 20
)

// credentials are what a reload replaces, all at once.
type credentials struct {
	keys   []apiKey         // empty unless --api-keys-file is set
	secret secret.Value     // the held upstream secret; zero in pass-through
	cert   *tls.Certificate // the server certificate; nil for plaintext
	grants *grantTable      // nil unless --grants-file is set (grants.go)
}

// credentialFiles says where each reloadable credential comes from, and
// under which name to blame it.
type credentialFiles struct {
	secretSource string       // EnvAPISecret, EnvAPISecretFile, or "" (none, or dev mode)
	fixedSecret  secret.Value // from the environment or dev mode: never reloaded
	secretFile   string

	keysSource, keysFile string
	certSource, certFile string
	keySource, keyFile   string

	grantsSource, grantsFile string
}

// paths are the files a change to which calls for a reload.
func (f *credentialFiles) paths() []string {
	var out []string
	for _, p := range []string{f.secretFile, f.keysFile, f.certFile, f.keyFile, f.grantsFile} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// load reads every credential file. Any failure fails the whole load, so
// the caller keeps the credentials it had.
func (f *credentialFiles) load() (*credentials, error) {
	c := &credentials{secret: f.fixedSecret}
	var err error
	if f.secretFile != "" {
		if c.secret, err = readSecretFile(f.secretFile); err != nil {
			return nil, err
		}
	}
	if f.keysFile != "" {
		b, err := readCapped(f.keysFile, maxAPIKeysFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f.keysSource, fileError(err))
		}
		if c.keys, err = parseKeys(f.keysSource, f.keysFile, b); err != nil {
			return nil, err
		}
	}
	if f.certFile != "" {
		if c.cert, err = f.loadKeyPair(); err != nil {
			return nil, err
		}
	}
	if f.grantsFile != "" {
		if c.grants, err = loadGrants(f.grantsSource, f.grantsFile); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (f *credentialFiles) loadKeyPair() (*tls.Certificate, error) {
	certPEM, err := readCapped(f.certFile, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.certSource, fileError(err))
	}
	keyPEM, err := readCapped(f.keyFile, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.keySource, fileError(err))
	}
	// X509KeyPair's errors describe PEM block types and parse failures,
	// never key material.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %s and %s are not a usable key pair: %v", f.certSource, f.keySource, f.certFile, f.keyFile, err)
	}
	return &pair, nil
}

func loadClientCAs(src, path string) (*x509.CertPool, error) {
	caPEM, err := readCapped(path, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", src, fileError(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificates", src, path)
	}
	return pool, nil
}

// ParseSecret trims surrounding whitespace and insists on printable ASCII
// without spaces: the value travels in an "authorization: Bearer" header
// (gRPC metadata allows nothing else), so anything else is a mistake such as
// a second line in a file. src names the setting; errors never quote the
// value.
func ParseSecret(src, v string) (secret.Value, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", fmt.Errorf("%s: the secret is empty", src)
	}
	if !visibleASCII(v) {
		return "", fmt.Errorf("%s: the secret contains spaces, line breaks or non-printable/non-ASCII characters", src)
	}
	return secret.Value(v), nil
}

func readSecretFile(path string) (secret.Value, error) {
	b, err := readCapped(path, maxSecretFile)
	if err != nil {
		return "", fmt.Errorf("%s: %v", EnvAPISecretFile, fileError(err))
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "", fmt.Errorf("%s: %s is empty", EnvAPISecretFile, path)
	}
	v, err := ParseSecret(EnvAPISecretFile, string(b))
	if err != nil {
		return "", fmt.Errorf("%s: %s: the file must hold just the secret; it contains spaces, more than one line or non-printable/non-ASCII characters", EnvAPISecretFile, path)
	}
	return v, nil
}

// fileError says plainly what is wrong with a file; the path is in the
// *PathError's own text.
func fileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist", pe.Path)
	}
	return err
}

// readCapped reads at most limit bytes of path and fails if there are more.
// Only a regular file is read: a FIFO, a device or a socket put in a
// file's place could make the read wait for ever, and with it every reload
// and the shutdown, which waits for the watcher. O_NONBLOCK lets the open
// of a FIFO return at once; it changes nothing for a regular file.
func readCapped(path string, limit int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return nil, err
	} else if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	// A UTF-8 byte order mark from a Windows editor is not part of the value.
	return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), nil
}

// visibleASCII reports whether v is all printable ASCII other than space,
// which is what a Bearer token and every ChatBotKit secret and API key
// consists of.
func visibleASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}

// fingerprint is a short, non-reversible tag of a credential: the first 8
// hex digits of its SHA-256.
func fingerprint(v []byte) string {
	d := sha256.Sum256(v)
	return hex.EncodeToString(d[:4])
}
