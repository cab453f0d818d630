package auth

import (
	"context"
	"crypto/sha256"
	"time"
)

// defaultWatchInterval is how often Watch looks at the credential files:
// well within the 10 s in which a change must take effect.
const defaultWatchInterval = 2 * time.Second

// Reload re-reads the keys file, the secret file, the TLS key pair and the
// grants file, and puts them in force for calls that start from now on;
// calls in flight keep what they started with. If any file fails to load, nothing changes: the
// previous credentials stay in force (never weaker authentication), and the
// error is logged and returned. why says what asked for the reload
// ("SIGHUP", "file change"), for the log line.
func (a *Authenticator) Reload(why string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	creds, err := a.files.load()
	if err != nil {
		a.log.Error("credentials reload failed; the previous credentials stay in force", "trigger", why, "err", err.Error())
		if a.onReload != nil {
			a.onReload(err)
		}
		return err
	}
	a.creds.Store(creds)
	a.log.Info("credentials reloaded", "trigger", why, "api_keys", len(creds.keys),
		"upstream_secret", !creds.secret.IsZero(), "tls_certificate", creds.cert != nil, "grants", creds.grants.count())
	if a.onReload != nil {
		a.onReload(nil)
	}
	return nil
}

// Watch reloads whenever the content of a credential file changes, looking
// every interval (defaultWatchInterval if <= 0), until ctx ends. It compares
// contents, not modification times, so it sees a file rewritten in place,
// replaced by rename, or swapped underneath by Kubernetes (which points the
// mounted Secret's "..data" symlink at a new directory) alike. A change
// that fails to load is reported once, not on every look; the next change
// (or a SIGHUP) tries again. With no credential files it returns at once.
func (a *Authenticator) Watch(ctx context.Context, interval time.Duration) {
	paths := a.files.paths()
	if len(paths) == 0 {
		return
	}
	if interval <= 0 {
		interval = defaultWatchInterval
	}
	last := a.loadedDigest
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := contentsDigest(paths)
		if d == last {
			continue
		}
		// A look that straddles Kubernetes' swap of "..data" sees some old
		// files and some new ones (or an old one already removed). Act only
		// on contents that read the same twice running; a swap in progress
		// is settled by the next look.
		if contentsDigest(paths) != d {
			continue
		}
		last = d
		_ = a.Reload("file change")
	}
}

// contentsDigest is one digest over the contents of every file (an
// unreadable file counts as its error, so it changing counts too).
func contentsDigest(paths []string) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range paths {
		b, err := readCapped(p, maxAPIKeysFile)
		if err != nil {
			b = []byte("error: " + err.Error())
		}
		d := sha256.Sum256(b)
		h.Write([]byte(p))
		h.Write(d[:])
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}
