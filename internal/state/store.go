// Package state is what cbkgate's replicas may share: the --caller-rate
// buckets and the records of idempotent Creates. Store is the one
// interface; Memory keeps everything in the process (one replica), Redis
// in a Redis server every replica reaches. The service asks a Store
// questions without knowing which one answers.
//
// A Store holds records as opaque bytes under a Key; Records (records.go)
// gives them their meaning and seals them (AES-256-GCM), so no store ever
// sees a token's secret in plain text.
package state

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"
)

// Limiter is --caller-rate: each caller identity may cause n upstream
// requests per second, in bursts of 2n.
type Limiter interface {
	// Allow takes one request for caller now, or, when the caller is over
	// its rate, takes nothing and says how long until one would be allowed.
	Allow(ctx context.Context, caller string) (ok bool, retryAfter time.Duration)
	// Wait takes one request for caller, waiting as long as its rate
	// needs, or until ctx ends (then it returns ctx's error).
	Wait(ctx context.Context, caller string) error
}

// Key names one idempotency record: a request_id is the caller's own, for
// one user.
type Key struct {
	Caller, UserID, RequestID string
}

// encode is the key as bytes with every part length-prefixed, so no two
// keys share an encoding whatever their parts hold. It is the record's
// associated data when sealed.
func (k Key) encode() []byte {
	b := make([]byte, 0, 12+len(k.Caller)+len(k.UserID)+len(k.RequestID))
	for _, s := range []string{k.Caller, k.UserID, k.RequestID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// name is the key's name in a store: a digest, so names stay short and a
// Redis key listing shows no caller or user id.
func (k Key) name() string {
	sum := sha256.Sum256(k.encode())
	return "cbkgate:idem:" + hex.EncodeToString(sum[:])
}

// ErrFull: the store holds as many records as it may (in memory: per
// process or per caller). Nothing was stored.
var ErrFull = errors.New("state: too many idempotency records held")

// Store keeps the shared state. Every method that takes a context may fail
// when the store cannot be reached (Redis); the rate limiter never does:
// it falls back to the process's own buckets instead.
type Store interface {
	// CallerRate is the --caller-rate limiter kept in this store; nil when
	// the rate is off.
	CallerRate() Limiter
	// Now is the store's clock, the one every replica agrees on.
	Now(ctx context.Context) (time.Time, error)
	// Claim stores value under key if nothing is stored there, for ttl:
	// claimed is true. Otherwise it stores nothing and returns what is
	// there.
	Claim(ctx context.Context, key Key, value []byte, ttl time.Duration) (current []byte, claimed bool, err error)
	// Get returns what is stored under key, nil when nothing is.
	Get(ctx context.Context, key Key) ([]byte, error)
	// Replace stores value under key, for ttl, if old is what is stored
	// there now; ok says whether it did.
	Replace(ctx context.Context, key Key, old, value []byte, ttl time.Duration) (ok bool, err error)
	// Remove deletes key if old is what is stored there now.
	Remove(ctx context.Context, key Key, old []byte) error
	// Shared says whether every replica sees this store (Redis), rather
	// than this process alone.
	Shared() bool
	// Close releases the store's connections.
	Close() error
}
