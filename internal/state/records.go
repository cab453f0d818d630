package state

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// RecordTTL is how long a request_id is remembered: a Create with one is
// executed at most once per (caller, user_id, request_id) for this long.
const RecordTTL = 24 * time.Hour

// KeyBytes is the size of the key records are sealed with (AES-256).
const KeyBytes = 32

// RecordState is where an idempotent Create stands.
type RecordState string

const (
	// Pending: an upstream create (or a reconciliation) is under way.
	Pending RecordState = "pending"
	// Unknown: a create was sent and no definitive answer came back.
	Unknown RecordState = "unknown"
	// Done: the outcome is known and recorded, to be replayed.
	Done RecordState = "done"
)

// Record is what is remembered of one request_id.
type Record struct {
	State RecordState `json:"s"`
	// Digest identifies the request's fields (its deterministic encoding
	// without the request_id).
	Digest []byte `json:"d"`
	// Attempts are the cbkgate.attempt markers of the upstream creates
	// that may have made a token no one knows the secret of; the last one
	// is the newest.
	Attempts []string `json:"a,omitempty"`
	// Started is when the newest attempt began, on the store's clock.
	Started time.Time `json:"t"`
	// A Done record's outcome: a token (ID, Token, CreateTime) or an error
	// (Status, a google.rpc.Status in its binary encoding).
	ID         string    `json:"i,omitempty"`
	Token      string    `json:"k,omitempty"`
	CreateTime time.Time `json:"c,omitzero"`
	Status     []byte    `json:"e,omitempty"`

	raw []byte // as stored, for compare-and-set
}

// Attempt is the newest attempt's marker.
func (r *Record) Attempt() string {
	if len(r.Attempts) == 0 {
		return ""
	}
	return r.Attempts[len(r.Attempts)-1]
}

// ErrUndecryptable: a record is stored that this process cannot open (a
// changed --state-key-file, or tampering). It is never re-executed.
var ErrUndecryptable = errors.New("state: a record cannot be decrypted with this --state-key-file")

// Records keeps idempotency records in a Store, each sealed whole with
// AES-256-GCM under the state key, with its Key as associated data: a
// record copied under another key does not open.
type Records struct {
	store Store
	aead  cipher.AEAD
}

// NewRecords returns the records of store, sealed with key (KeyBytes long).
func NewRecords(store Store, key []byte) (*Records, error) {
	if len(key) != KeyBytes {
		return nil, fmt.Errorf("state: the key is %d bytes, want %d", len(key), KeyBytes)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Records{store: store, aead: aead}, nil
}

// Store is the store the records live in.
func (rs *Records) Store() Store { return rs.store }

func (rs *Records) seal(key Key, r *Record) ([]byte, error) {
	plain, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, rs.aead.NonceSize(), rs.aead.NonceSize()+len(plain)+rs.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return rs.aead.Seal(nonce, nonce, plain, key.encode()), nil
}

func (rs *Records) open(key Key, raw []byte) (*Record, error) {
	n := rs.aead.NonceSize()
	if len(raw) < n {
		return nil, ErrUndecryptable
	}
	plain, err := rs.aead.Open(nil, raw[:n], raw[n:], key.encode())
	if err != nil {
		return nil, ErrUndecryptable
	}
	r := &Record{}
	if err := json.Unmarshal(plain, r); err != nil {
		return nil, ErrUndecryptable
	}
	r.raw = raw
	return r, nil
}

// Now is the store's clock.
func (rs *Records) Now(ctx context.Context) (time.Time, error) { return rs.store.Now(ctx) }

// Claim stores r under key unless a record is there: then it returns that
// record and claimed false.
func (rs *Records) Claim(ctx context.Context, key Key, r *Record) (cur *Record, claimed bool, err error) {
	raw, err := rs.seal(key, r)
	if err != nil {
		return nil, false, err
	}
	got, claimed, err := rs.store.Claim(ctx, key, raw, RecordTTL)
	if err != nil {
		rs.undoClaim(ctx, key, raw)
		return nil, false, err
	}
	if claimed {
		r.raw = raw
		return r, true, nil
	}
	cur, err = rs.open(key, got)
	return cur, false, err
}

// undoClaimTimeout bounds undoClaim.
const undoClaimTimeout = 2 * time.Second

// undoClaim removes raw from key if a claim whose answer was lost stored
// it after all: a Redis slower than the client's bound still carries out
// the claim it received. Left there, the record would hold the request_id
// as pending although the call was refused STATE_UNAVAILABLE, which
// records nothing: a retry would wait for it, and reconcile only after
// 30 s. raw holds a random attempt, so no other call's record can match.
// (A claim that reaches the store only after this removal still stays.)
func (rs *Records) undoClaim(ctx context.Context, key Key, raw []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoClaimTimeout)
	defer cancel()
	_ = rs.store.Remove(ctx, key, raw)
}

// Get returns the record under key, nil when there is none.
func (rs *Records) Get(ctx context.Context, key Key) (*Record, error) {
	raw, err := rs.store.Get(ctx, key)
	if err != nil || raw == nil {
		return nil, err
	}
	return rs.open(key, raw)
}

// Replace stores next under key if old is still what is stored there.
func (rs *Records) Replace(ctx context.Context, key Key, old, next *Record) (bool, error) {
	raw, err := rs.seal(key, next)
	if err != nil {
		return false, err
	}
	ok, err := rs.store.Replace(ctx, key, old.raw, raw, RecordTTL)
	if ok {
		next.raw = raw
	}
	return ok, err
}

// Remove deletes the record under key if it is still old: its request_id
// is free again.
func (rs *Records) Remove(ctx context.Context, key Key, old *Record) error {
	return rs.store.Remove(ctx, key, old.raw)
}

// Same reports whether a and b are the same stored record.
func Same(a, b *Record) bool { return a != nil && b != nil && bytes.Equal(a.raw, b.raw) }

// LoadKey reads --state-key-file: 32 bytes, raw or base64 (surrounding
// whitespace ignored). Its errors never quote the file.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, here
		}
		return nil, fmt.Errorf("cannot read the state key file %s: %w", path, err)
	}
	if len(b) == KeyBytes {
		return b, nil
	}
	text := bytes.TrimSpace(b)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(string(text)); err == nil && len(k) == KeyBytes {
			return k, nil
		}
	}
	return nil, fmt.Errorf("the state key file %s does not hold %d bytes, raw or base64", path, KeyBytes)
}

// RandomKey is a key for one process's own records (memory mode).
func RandomKey() []byte {
	k := make([]byte, KeyBytes)
	_, _ = rand.Read(k) // crypto/rand never fails on supported platforms
	return k
}
