package state

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/cbkgate/cbkgate/internal/callerrate"
)

// Timeouts of every Redis command. Redis answers in well under a
// millisecond; one that takes longer is as good as down, and a call
// without a request_id must not wait on it for long.
const (
	redisDialTimeout = time.Second
	redisIOTimeout   = time.Second
)

// rateBackoff is how long the rate limiter uses the process's own buckets
// after Redis failed it, before it asks Redis again: while Redis is down,
// calls do not each pay a failed round trip.
const rateBackoff = time.Second

// ParseRedisURL checks a --state value of the form
// redis://[USER:PASSWORD@]HOST:PORT/DB (rediss:// for TLS). Its errors
// never hold the password.
func ParseRedisURL(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, errors.New(`want "memory" or a redis:// or rediss:// URL`)
	}
	if u.Host == "" {
		return nil, errors.New("the URL names no host")
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		// go-redis's errors name the part at fault, never the password,
		// but they may quote the URL: say it in words instead.
		return nil, fmt.Errorf("not a usable Redis URL (%s)", RedactURL(raw))
	}
	return opts, nil
}

// RedactURL is raw with its password, if any, replaced: for logs and errors.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// quietRedisLog silences go-redis's own log, which writes to stderr in a
// format of its own: every failure it would tell of reaches OnError
// (logged and counted by cbkgate) through the command that met it.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

var silenceRedisLog sync.Once

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// URL is redis://[USER:PASSWORD@]HOST:PORT/DB or rediss://...
	URL string
	// CallerRate is --caller-rate (0: off).
	CallerRate int
	// OnPaced, if set, is told of each request a List has to wait for.
	OnPaced func()
	// OnError, if set, is told of each failure of Redis, by op ("rate" or
	// "record"); err's text holds no password.
	OnError func(op string, err error)
}

// Redis is the Store shared by every replica that names the same Redis.
type Redis struct {
	client   *redis.Client
	password string
	rate     *redisRate // nil: rate off
	onError  func(op string, err error)
}

// NewRedis connects lazily: a Redis that is down at start is reported by
// the first call that needs it, and cbkgate starts all the same.
func NewRedis(opts RedisOptions) (*Redis, error) {
	ro, err := ParseRedisURL(opts.URL)
	if err != nil {
		return nil, err
	}
	ro.DialTimeout = redisDialTimeout
	ro.ReadTimeout = redisIOTimeout
	ro.WriteTimeout = redisIOTimeout
	ro.ContextTimeoutEnabled = true
	// No retries and no dial retries: a Redis that does not answer at
	// once is treated as down (the rate falls back, records fail closed)
	// rather than made to hold up the call. A retried Claim whose first
	// reply was lost would also find its own record and wait on it.
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	silenceRedisLog.Do(func() { redis.SetLogger(quietRedisLog{}) })
	r := &Redis{client: redis.NewClient(ro), password: ro.Password, onError: opts.OnError}
	if opts.CallerRate > 0 {
		r.rate = &redisRate{
			store:    r,
			limiter:  redis_rate.NewLimiter(r.client),
			limit:    redis_rate.Limit{Rate: opts.CallerRate, Burst: 2 * opts.CallerRate, Period: time.Second},
			fallback: callerrate.New(opts.CallerRate, opts.OnPaced),
			onPaced:  opts.OnPaced,
			batch:    batchFor(opts.CallerRate),
		}
	}
	return r, nil
}

// failed reports err to OnError (with the password redacted) and returns it
// so redacted.
func (r *Redis) failed(op string, err error) error {
	if err == nil {
		return nil
	}
	if r.password != "" && strings.Contains(err.Error(), r.password) {
		err = errors.New(strings.ReplaceAll(err.Error(), r.password, "[REDACTED]"))
	}
	if r.onError != nil {
		r.onError(op, err)
	}
	return err
}

// CallerRate implements Store.
func (r *Redis) CallerRate() Limiter {
	if r.rate == nil {
		return nil
	}
	return r.rate
}

// Shared implements Store.
func (r *Redis) Shared() bool { return true }

// Close implements Store.
func (r *Redis) Close() error { return r.client.Close() }

// Now implements Store: Redis's TIME.
func (r *Redis) Now(ctx context.Context) (time.Time, error) {
	t, err := r.client.Time(ctx).Result()
	return t, r.failed("record", err)
}

// The record scripts: each a compare-and-set, atomic on the server.
var (
	claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)
	replaceScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)
	removeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)
)

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, key Key, value []byte, ttl time.Duration) ([]byte, bool, error) {
	v, err := claimScript.Run(ctx, r.client, []string{key.name()}, value, ttl.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, r.failed("record", err)
	}
	return []byte(v), false, nil
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key Key) ([]byte, error) {
	v, err := r.client.Get(ctx, key.name()).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, r.failed("record", err)
}

// Replace implements Store.
func (r *Redis) Replace(ctx context.Context, key Key, old, value []byte, ttl time.Duration) (bool, error) {
	n, err := replaceScript.Run(ctx, r.client, []string{key.name()}, old, value, ttl.Milliseconds()).Int()
	return n == 1, r.failed("record", err)
}

// Remove implements Store.
func (r *Redis) Remove(ctx context.Context, key Key, old []byte) error {
	err := removeScript.Run(ctx, r.client, []string{key.name()}, old).Err()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return r.failed("record", err)
}

// redisRate is --caller-rate kept in Redis with redis_rate's GCRA, so the
// rate holds for the cluster. When Redis fails it, the process's own
// buckets (callerrate, the memory store's limiter) take over: a caller
// then gets its rate per replica, never a refusal for Redis's sake.
type redisRate struct {
	store    *Redis
	limiter  *redis_rate.Limiter
	limit    redis_rate.Limit
	fallback *callerrate.Limiter
	onPaced  func()
	batch    int // the most requests asked of Redis at a time (see leases)
	leased   leases
	// downUntil (unix nanoseconds): Redis failed; until then the
	// fallback answers alone.
	downUntil atomic.Int64
}

// ask asks Redis for one request; ok is false, with retryAfter, when the
// caller is over its rate. fell is true when Redis could not answer.
func (l *redisRate) ask(ctx context.Context, caller string) (ok bool, retryAfter time.Duration, fell bool) {
	now := time.Now()
	if now.UnixNano() < l.downUntil.Load() {
		return false, 0, true
	}
	ok, refusedFor, batch := l.leased.take(caller, now, l.batch)
	if ok || refusedFor > 0 {
		return ok, refusedFor, false
	}
	res, err := l.limiter.AllowAtMost(ctx, "cbkgate:"+caller, l.limit, batch)
	if err != nil {
		if ctx.Err() == nil {
			l.downUntil.Store(time.Now().Add(rateBackoff).UnixNano())
			l.store.failed("rate", err)
		}
		return false, 0, true
	}
	if res.Allowed > 0 {
		l.leased.keep(caller, res.Allowed-1, res.Remaining, now)
		return true, 0, false
	}
	retryAfter = max(res.RetryAfter, time.Millisecond)
	l.leased.refused(caller, retryAfter, now)
	return false, retryAfter, false
}

func (l *redisRate) Allow(ctx context.Context, caller string) (bool, time.Duration) {
	ok, retryAfter, fell := l.ask(ctx, caller)
	if fell {
		return l.fallback.Allow(caller)
	}
	return ok, retryAfter
}

func (l *redisRate) Wait(ctx context.Context, caller string) error {
	paced := false
	for {
		ok, retryAfter, fell := l.ask(ctx, caller)
		switch {
		case fell:
			return l.fallback.Wait(ctx, caller)
		case ok:
			return nil
		}
		if !paced && l.onPaced != nil {
			l.onPaced()
		}
		paced = true
		t := time.NewTimer(retryAfter)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
