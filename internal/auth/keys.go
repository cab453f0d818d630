package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// apiKey is one line of the keys file. Only the key's SHA-256 is kept:
// comparing digests of equal length hides the keys' lengths, and a file
// of sha256: lines need not hold the keys at all.
type apiKey struct {
	name   string
	digest [sha256.Size]byte
}

const digestPrefix = "sha256:"

// maxKeyName is the longest key name; names go into log lines and rate
// limiter keys.
const maxKeyName = 64

// parseKeys reads the keys file: one key per line, surrounding whitespace
// trimmed, blank lines and lines starting with # ignored. A line is
// "NAME KEY", "NAME sha256:HEX" or a bare "KEY" (named "key-" and the first
// 8 hex digits of its SHA-256). Names are unique. Errors give the file and
// line number, never the content.
func parseKeys(src, path string, b []byte) ([]apiKey, error) {
	var keys []apiKey
	seen := map[string]int{}
	seenDigest := map[[sha256.Size]byte]int{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := func(format string, args ...any) error {
			return fmt.Errorf("%s: %s line %d: %s", src, path, i+1, fmt.Sprintf(format, args...))
		}
		k, err := parseKeyLine(line)
		if err != nil {
			return nil, at("%v", err)
		}
		if first, dup := seen[k.name]; dup {
			return nil, at("the key name %q is already used on line %d; names must be unique", k.name, first)
		}
		if first, dup := seenDigest[k.digest]; dup {
			// One key under two names would make the caller's identity
			// a matter of chance.
			return nil, at("the same key as on line %d; each key must appear once", first)
		}
		seen[k.name] = i + 1
		seenDigest[k.digest] = i + 1
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: %s holds no keys (blank lines and lines starting with # are ignored)", src, path)
	}
	return keys, nil
}

// parseKeyLine parses one non-comment line. Its errors never quote the
// key or digest.
func parseKeyLine(line string) (apiKey, error) {
	fields := strings.Fields(line)
	for i, f := range fields {
		if !visibleASCII(f) {
			return apiKey{}, fmt.Errorf("a line must be printable ASCII: NAME KEY, NAME sha256:HEX or KEY")
		}
		if i > 0 && strings.HasPrefix(f, "#") {
			// "KEY #prod" would otherwise be NAME KEY: the real key a
			// name (logged with every call), and "#prod" a key.
			return apiKey{}, fmt.Errorf("word %d starts with #: comments need a line of their own, and no key may start with #", i+1)
		}
	}
	switch len(fields) {
	case 1:
		key := fields[0]
		if strings.HasPrefix(strings.ToLower(key), digestPrefix) {
			return apiKey{}, fmt.Errorf("a sha256: digest needs a name in front: NAME sha256:HEX")
		}
		return apiKey{name: "key-" + fingerprint([]byte(key)), digest: sha256.Sum256([]byte(key))}, nil
	case 2:
		name, key := fields[0], fields[1]
		if !validKeyName(name) {
			return apiKey{}, fmt.Errorf("a key name must be 1 to %d of A-Z a-z 0-9 . _ - (the line is NAME KEY, NAME sha256:HEX or KEY)", maxKeyName)
		}
		if hexDigest, ok := cutPrefixFold(key, digestPrefix); ok {
			d, err := hex.DecodeString(hexDigest)
			if err != nil || len(d) != sha256.Size {
				return apiKey{}, fmt.Errorf("the key %q has a sha256: digest that is not 64 hex digits", name)
			}
			k := apiKey{name: name}
			copy(k.digest[:], d)
			return k, nil
		}
		return apiKey{name: name, digest: sha256.Sum256([]byte(key))}, nil
	default:
		return apiKey{}, fmt.Errorf("%d words where a line is NAME KEY, NAME sha256:HEX or KEY (comments need a line of their own)", len(fields))
	}
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

func validKeyName(n string) bool {
	if n == "" || len(n) > maxKeyName {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// matchKey compares the presented key's digest with every key's digest in
// constant time, with no early exit, so neither which key matched nor how
// long the keys are can be learned from timing. It returns the matching
// key's name.
func matchKey(keys []apiKey, presented string) (string, bool) {
	d := sha256.Sum256([]byte(presented))
	found := -1
	for i := range keys {
		eq := subtle.ConstantTimeCompare(d[:], keys[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return "", false
	}
	return keys[found].name, true
}
