// Command bench measures what cbkgate costs next to the ChatBotKit call it
// wraps. It hosts the emulator in this process (HTTP on loopback), runs
// cbkgate as a child process in front of it, and compares, pair by pair,
// calls through cbkgate with the same calls sent straight to the emulator:
//
//   - Create through gRPC, through the JSON gateway and through Connect vs
//     a direct REST create, at concurrency 16 (throughput) and 1 (latency
//     added);
//   - List of a user's tokens through gRPC vs the emulator's JSONL stream;
//   - cbkgate's resident memory while it streams a very long listing;
//   - cbkgate's own CPU time per create and per listed token, and what
//     metrics and a 50-line grants file add to it.
//
// The two sides of a pair run in alternating rounds (A B A B ...), so a
// noisy machine does not favour either; the table reports medians. cbkgate
// runs in its own process, so its CPU time and memory are the facade's
// alone. Run it from the repository root:
//
//	go run ./cmd/bench
//
// It prints a Markdown table on stdout and its progress on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
)

const (
	benchSecret = "bench-upstream-secret"
	createUser  = "bench-create"
	listUser    = "bench-list"
	memUser     = "bench-memory"
)

type options struct {
	rounds     int
	duration   time.Duration
	listRounds int
	conc       int
	listTokens int
	memTokens  int
	serverBin  string
	baseline   string
	// stateBaseline is a build from before --state, for the state phase.
	stateBaseline string
	infoLog       bool
	phases        map[string]bool
}

func main() {
	if os.Getenv(floorEnv) == "1" {
		if err := floorServer(); err != nil {
			fmt.Fprintln(os.Stderr, "bench floor server:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.rounds, "rounds", 20, "rounds of each create pair (A then B); the table shows medians")
	flag.DurationVar(&o.duration, "duration", 250*time.Millisecond, "length of one side of one round of a create pair")
	flag.IntVar(&o.listRounds, "list-rounds", 9, "rounds of the List pair, one listing per side each")
	flag.IntVar(&o.conc, "concurrency", 16, "concurrent callers in the create throughput pairs")
	flag.IntVar(&o.listTokens, "list-tokens", 100_000, "tokens in the listing of the List pair")
	flag.IntVar(&o.memTokens, "memory-tokens", 1_000_000, "tokens streamed while cbkgate's memory is sampled")
	flag.StringVar(&o.serverBin, "server", "", "a built cbkgate binary (default: build ./cmd/server into a temporary directory)")
	flag.StringVar(&o.baseline, "telemetry-baseline", "", "telemetry phase: compare against this cbkgate binary (run without --admin-addr, e.g. a build from before metrics) instead of this build with --admin-addr= (metrics off)")
	flag.StringVar(&o.stateBaseline, "state-baseline", "", "state phase: compare against this cbkgate binary (a build from before --state) instead of this build with --state memory")
	flag.BoolVar(&o.infoLog, "info-logging", true, "also measure gRPC Create with cbkgate logging every call (--log-level=info, its default)")
	phases := flag.String("phases", "memory,create,list,list-latency,telemetry,grants,floor", "the parts to run, comma-separated: memory, create, list, list-latency (List of 10,000 tokens with 0, 20 and 50 ms upstream latency), telemetry (CPU per call, metrics on vs off), grants (CPU per call, a 50-line grants file vs none), floor (a bare grpc-go + net/http server, for scale), state (CPU per Create without request_id, --state memory and redis vs -state-baseline; not run unless named)")
	flag.Parse()
	o.phases = map[string]bool{}
	for p := range strings.SplitSeq(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "memory", "create", "list", "list-latency", "telemetry", "grants", "floor", "state":
			o.phases[p] = true
		default:
			fmt.Fprintf(os.Stderr, "bench: -phases: unknown phase %q\n", p)
			os.Exit(2)
		}
	}
	if o.rounds < 1 || o.duration <= 0 || o.listRounds < 1 || o.conc < 1 || o.listTokens < 1 || o.memTokens < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -duration, -list-rounds, -concurrency, -list-tokens and -memory-tokens must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := benchmark(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func benchmark(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "cbkgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := o.serverBin
	if bin == "" {
		progress("building cmd/server ...")
		if bin, err = buildServer(dir); err != nil {
			return err
		}
	}

	// A full run creates about a million tokens, ten times the emulator's
	// default cap (which bounds a shared dev emulator's memory, not this
	// process's).
	emu := emulator.New(emulator.Options{Secret: benchSecret, MaxTokens: 20_000_000})
	emu.Seed(listUser, o.listTokens)
	emu.Seed(memUser, o.memTokens)
	upstream, stopUpstream, err := serveUpstream(emu)
	if err != nil {
		return err
	}
	defer stopUpstream()

	srv, err := startServer(bin, nil, upstream, benchSecret, "warn", metricsOn, dir)
	if err != nil {
		return err
	}
	defer srv.stop()

	b := &bench{
		o:        o,
		srv:      srv,
		grpc:     tokenv1.NewTokenServiceClient(srv.conn),
		direct:   newHTTPClient(),
		gateway:  newHTTPClient(),
		upstream: upstream,
	}
	t := &table{}
	t.header(o)

	// Memory first, on a process that has served nothing yet, so that the
	// growth counts everything the stream needs.
	if o.phases["memory"] {
		if err := b.memory(ctx, t); err != nil {
			return err
		}
	}
	if o.phases["create"] {
		if err := b.creates(ctx, t); err != nil {
			return err
		}
	}
	if o.phases["list"] {
		if err := b.list(ctx, t); err != nil {
			return err
		}
	}
	if o.phases["list-latency"] {
		if err := b.listLatency(ctx, t, bin, dir); err != nil {
			return err
		}
	}
	if o.infoLog && o.phases["create"] {
		if err := b.infoLogging(ctx, t, bin, dir); err != nil {
			return err
		}
	}
	if o.phases["telemetry"] {
		if err := b.telemetry(ctx, t, bin, dir); err != nil {
			return err
		}
	}
	if o.phases["grants"] {
		if err := b.grants(ctx, t, bin, dir); err != nil {
			return err
		}
	}
	if o.phases["state"] {
		if err := b.state(ctx, t, bin, dir); err != nil {
			return err
		}
	}
	if o.phases["floor"] {
		if err := b.floor(ctx, t, dir); err != nil {
			return err
		}
	}
	t.print(os.Stdout)
	return nil
}

func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
}

type bench struct {
	o        options
	srv      *server
	grpc     tokenv1.TokenServiceClient
	direct   *http.Client
	gateway  *http.Client
	upstream string
}

func (b *bench) directCreateURL() string {
	return b.upstream + "/v1/partner/user/" + createUser + "/token/create"
}

// memory samples cbkgate's resident memory while one gRPC List streams
// memTokens tokens.
func (b *bench) memory(ctx context.Context, t *table) error {
	progress("memory: streaming %d tokens through gRPC ...", b.o.memTokens)
	time.Sleep(200 * time.Millisecond) // let start-up settle
	before, _ := b.srv.memory()
	peakReset := b.srv.resetPeak()
	var (
		wg      sync.WaitGroup
		sampled int64
		done    = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, _ := b.srv.memory(); rss > sampled {
				sampled = rss
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	cpu0 := b.srv.cpuTime()
	r, err := timed(func() (int, error) { return grpcList(ctx, b.grpc, memUser) })
	cpu := b.srv.cpuTime() - cpu0
	close(done)
	wg.Wait()
	if err != nil {
		return err
	}
	if r.calls != b.o.memTokens {
		return fmt.Errorf("memory: listed %d tokens, want %d", r.calls, b.o.memTokens)
	}
	peak := sampled
	if _, hwm := b.srv.memory(); peakReset && hwm > peak {
		peak = hwm
	}
	growth := peak - before
	progress("memory: RSS %s before, %s peak, %.0f tokens/s", mib(before), mib(peak), r.perSecond())
	t.row(fmt.Sprintf("cbkgate RSS streaming %s tokens (before → peak)", count(b.o.memTokens)),
		mib(before), mib(peak), "+"+mib(growth), "< 32 MiB", growth < 32<<20)
	t.cpuRow(fmt.Sprintf("cbkgate CPU per token, streaming %s tokens", count(b.o.memTokens)), cpu, r.calls)
	return nil
}

// creates runs the six create pairs.
func (b *bench) creates(ctx context.Context, t *table) error {
	grpcCall, err := grpcCreate(b.grpc, createUser)
	if err != nil {
		return err
	}
	direct := httpCreate(b.direct, b.directCreateURL(), benchSecret)
	gateway := httpCreate(b.gateway, "http://"+b.srv.httpAddr+"/v1/users/"+createUser+"/tokens", "")
	connectCall := connectCreate(b.gateway, "http://"+b.srv.httpAddr+"/cbkgate.token.v1.TokenService/Create")
	c := b.o.conc

	p, err := b.pair(ctx, fmt.Sprintf("Create gRPC, c=%d", c), c, grpcCall, direct)
	if err != nil {
		return err
	}
	t.ratioRow(fmt.Sprintf("Create gRPC ÷ direct REST, c=%d (calls/s)", c), p, "≥ 0.45", 0.45)
	grpcCPU := p

	p, err = b.pair(ctx, fmt.Sprintf("Create JSON gateway, c=%d", c), c, gateway, direct)
	if err != nil {
		return err
	}
	t.ratioRow(fmt.Sprintf("Create JSON gateway ÷ direct REST, c=%d (calls/s)", c), p, "≥ 0.30", 0.30)
	gatewayCPU := p

	p, err = b.pair(ctx, fmt.Sprintf("Create Connect, c=%d", c), c, connectCall, direct)
	if err != nil {
		return err
	}
	t.ratioRow(fmt.Sprintf("Create Connect (JSON) ÷ direct REST, c=%d (calls/s)", c), p, "", 0)
	connectCPU := p

	p, err = b.pair(ctx, "Create gRPC, c=1", 1, grpcCall, direct)
	if err != nil {
		return err
	}
	t.latencyRows("Create gRPC vs direct REST, c=1", p, 150*time.Microsecond)

	p, err = b.pair(ctx, "Create JSON gateway, c=1", 1, gateway, direct)
	if err != nil {
		return err
	}
	t.latencyRows("Create JSON gateway vs direct REST, c=1", p, 0)

	p, err = b.pair(ctx, "Create Connect, c=1", 1, connectCall, direct)
	if err != nil {
		return err
	}
	t.latencyRows("Create Connect (JSON) vs direct REST, c=1", p, 0)

	t.cpuRow(fmt.Sprintf("cbkgate CPU per Create, gRPC, c=%d", c), grpcCPU.cpu(), grpcCPU.calls())
	t.cpuRow(fmt.Sprintf("cbkgate CPU per Create, JSON gateway, c=%d", c), gatewayCPU.cpu(), gatewayCPU.calls())
	t.cpuRow(fmt.Sprintf("cbkgate CPU per Create, Connect (JSON), c=%d", c), connectCPU.cpu(), connectCPU.calls())
	return nil
}

// list runs the List pair: the whole listing through gRPC vs the JSONL
// stream read directly.
func (b *bench) list(ctx context.Context, t *table) error {
	url := b.upstream + "/v1/partner/user/" + listUser + "/token/list"
	a := func() (int, error) { return grpcList(ctx, b.grpc, listUser) }
	d := func() (int, error) { return jsonlList(ctx, b.direct, url, benchSecret) }
	// Warm-up.
	for _, f := range []func() (int, error){a, d} {
		if _, err := f(); err != nil {
			return err
		}
	}
	var p pairRuns
	for i := range b.o.listRounds {
		cpu0 := b.srv.cpuTime()
		ra, err := timed(a)
		ra.cpu = b.srv.cpuTime() - cpu0
		if err != nil {
			return err
		}
		rb, err := timed(d)
		if err != nil {
			return err
		}
		if ra.calls != b.o.listTokens || rb.calls != b.o.listTokens {
			return fmt.Errorf("list: got %d and %d tokens, want %d", ra.calls, rb.calls, b.o.listTokens)
		}
		p.a, p.b = append(p.a, ra), append(p.b, rb)
		progress("List %d tokens, round %d/%d: gRPC %.0f tokens/s, direct JSONL %.0f tokens/s", b.o.listTokens, i+1, b.o.listRounds, ra.perSecond(), rb.perSecond())
	}
	t.ratioRow(fmt.Sprintf("List %s tokens, gRPC ÷ direct JSONL (tokens/s)", count(b.o.listTokens)), p, "≥ 0.50", 0.50)
	t.cpuRow(fmt.Sprintf("cbkgate CPU per listed token, List of %s", count(b.o.listTokens)), p.cpu(), p.calls())
	return nil
}

// infoLogging repeats the gRPC create pair against a second cbkgate that
// logs every call, as it does by default.
func (b *bench) infoLogging(ctx context.Context, t *table, bin, dir string) error {
	return b.withServer(bin, nil, "info", dir, func(grpcCall, direct call) error {
		c := b.o.conc
		p, err := b.pair(ctx, fmt.Sprintf("Create gRPC, c=%d, --log-level=info", c), c, grpcCall, direct)
		if err != nil {
			return err
		}
		t.ratioRow(fmt.Sprintf("Create gRPC ÷ direct REST, c=%d, --log-level=info (calls/s)", c), p, "", 0)
		t.cpuRow(fmt.Sprintf("cbkgate CPU per Create, gRPC, c=%d, --log-level=info", c), p.cpu(), p.calls())
		return nil
	})
}

// floor runs the gRPC Create pairs against floorServer: what grpc-go and
// net/http alone cost on this machine, next to what cbkgate costs.
func (b *bench) floor(ctx context.Context, t *table, dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return b.withServer(self, []string{floorEnv + "=1"}, "warn", dir, func(grpcCall, direct call) error {
		c := b.o.conc
		p, err := b.pair(ctx, fmt.Sprintf("floor: bare grpc-go + net/http Create, c=%d", c), c, grpcCall, direct)
		if err != nil {
			return err
		}
		t.ratioRow(fmt.Sprintf("for scale: bare grpc-go + net/http Create ÷ direct REST, c=%d (calls/s)", c), p, "", 0)
		t.cpuRow(fmt.Sprintf("for scale: bare grpc-go + net/http, CPU per Create, c=%d", c), p.cpu(), p.calls())
		p, err = b.pair(ctx, "floor: bare grpc-go + net/http Create, c=1", 1, grpcCall, direct)
		if err != nil {
			return err
		}
		t.latencyRows("for scale: bare grpc-go + net/http Create vs direct REST, c=1", p, 0)
		return nil
	})
}

// withServer starts another server process (bin with env, logging at
// logLevel), makes it the one measured while run runs, and hands run a
// gRPC Create through it and the same Create sent directly.
func (b *bench) withServer(bin string, env []string, logLevel, dir string, run func(grpcCall, direct call) error) error {
	metrics := metricsOn
	if len(env) > 0 {
		metrics = metricsNoFlag // the floor server takes no cbkgate flags
	}
	srv, err := startServer(bin, env, b.upstream, benchSecret, logLevel, metrics, dir)
	if err != nil {
		return err
	}
	defer srv.stop()
	grpcCall, err := grpcCreate(tokenv1.NewTokenServiceClient(srv.conn), createUser)
	if err != nil {
		return err
	}
	saved := b.srv
	b.srv = srv
	defer func() { b.srv = saved }()
	return run(grpcCall, httpCreate(b.direct, b.directCreateURL(), benchSecret))
}

// pairRuns holds the rounds of both sides of a pair: a through cbkgate, b
// direct.
type pairRuns struct{ a, b []run }

func (p pairRuns) cpu() (d time.Duration) {
	for _, r := range p.a {
		d += r.cpu
	}
	return d
}

func (p pairRuns) calls() (n int) {
	for _, r := range p.a {
		n += r.calls
	}
	return n
}

// pair warms both sides up, then runs rounds of a then b.
func (b *bench) pair(ctx context.Context, name string, conc int, a, direct call) (pairRuns, error) {
	var p pairRuns
	for _, f := range []call{a, direct} {
		if _, err := load(ctx, conc, time.Second, f); err != nil {
			return p, fmt.Errorf("%s: warm-up: %w", name, err)
		}
	}
	for i := range b.o.rounds {
		cpu0 := b.srv.cpuTime()
		ra, err := load(ctx, conc, b.o.duration, a)
		ra.cpu = b.srv.cpuTime() - cpu0
		if err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
		rb, err := load(ctx, conc, b.o.duration, direct)
		if err != nil {
			return p, fmt.Errorf("%s, direct: %w", name, err)
		}
		p.a, p.b = append(p.a, ra), append(p.b, rb)
		progress("%s, round %d/%d: %.0f/s (p50 %s) vs direct %.0f/s (p50 %s)", name, i+1, b.o.rounds,
			ra.perSecond(), micros(percentile(ra.lats, 50)), rb.perSecond(), micros(percentile(rb.lats, 50)))
	}
	return p, nil
}
