// Package app assembles cbkgate from its parts: the gRPC server with the
// TokenService, health and reflection; the HTTP server with the JSON
// gateway; the REST client; and, in dev mode, the emulator. It owns their
// lifecycle: listen, serve, drain on shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/connectapi"
	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/httpapi"
	"github.com/cbkgate/cbkgate/internal/logging"
	"github.com/cbkgate/cbkgate/internal/service"
	"github.com/cbkgate/cbkgate/internal/state"
	"github.com/cbkgate/cbkgate/internal/telemetry"
	"github.com/cbkgate/cbkgate/internal/version"
)

// Limits of the gRPC server. Requests are small (ids, names, two small
// objects), so a tight receive limit costs callers nothing and bounds what a
// hostile one can make the server buffer.
const (
	maxRecvMsgBytes = 1 << 20
	maxSendMsgBytes = 4 << 20
)

// App is one running cbkgate.
type App struct {
	cfg *config.Config
	log *slog.Logger

	grpcLis, httpLis net.Listener
	gatewayLis       *gatewayListener
	grpcServer       *grpc.Server // the gRPC port
	hopServer        *grpc.Server // the in-process hop from the HTTP side
	httpServer       *http.Server
	health           *health.Server
	gatewayClient    *grpc.ClientConn
	ready            atomic.Bool
	closing          atomic.Bool // shutdown has begun

	emulatorLis    net.Listener
	emulatorServer *http.Server

	// The admin listener (/metrics); nil when --admin-addr is empty.
	adminLis    net.Listener
	adminServer *http.Server
	metrics     *telemetry.Metrics // nil: metrics off
	tracing     *telemetry.Tracing

	upstream *chatbotkit.Client
	auth     *auth.Authenticator
	store    state.Store // --state
}

// New builds every part and opens every listener, so that a port in use or
// a bad certificate fails at start rather than on the first call.
func New(cfg *config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.closeListeners()
		}
	}()

	if cfg.AdminAddr != "" {
		// With no admin listener nothing could read the metrics, so none
		// are collected. They exist before anything that reports to them
		// is made: a hook bound to a.metrics while it is still nil (the
		// reload hook below) would count nothing, ever.
		a.metrics = telemetry.NewMetrics()
	}

	// Authentication first: a bad credential file or a contradictory
	// setup stops the start before anything listens.
	authCfg := cfg.Auth()
	authCfg.TrustedPeer = isGateway
	authCfg.Log = log
	authCfg.OnHTTPRefused = func(r *http.Request, reason, message string) {
		// The refusal is logged (and audited) by the HTTP middleware,
		// the one home of "http call refused" lines; it needs the
		// message.
		telemetry.NoteHTTPAuthRefused(r.Context(), message)
		a.metrics.AuthFailure(reason)
	}
	authCfg.OnReload = a.metrics.ConfigReload
	if a.auth, err = auth.Load(authCfg); err != nil {
		return nil, &ConfigError{err}
	}

	if cfg.Emulator {
		// Listen first: the upstream URL in cfg already names this address.
		if a.emulatorLis, err = net.Listen("tcp", cfg.EmulatorAddr); err != nil {
			return nil, fmt.Errorf("emulator: %w", err)
		}
		a.emulatorServer = &http.Server{
			Handler:           emulator.WithLatency(emulator.New(emulator.Options{Secret: cfg.EmulatorSecret.Reveal()}), cfg.EmulatorLatency),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}

	if a.tracing, err = telemetry.NewTracing(context.Background(), log); err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// The auth interceptors give every call the secret to spend (the
	// caller's, or the held one in force when the call began), so a
	// rotated secret is used from the next call on.
	client, err := chatbotkit.New(chatbotkit.Options{
		BaseURL:        cfg.Upstream.String(),
		UserAgent:      "cbkgate/" + version.Version(),
		Transport:      telemetry.UpstreamTransport(a.tracing, chatbotkit.NewTransport()),
		RequestHeaders: a.tracing.UpstreamHeaders,
		OnAttempt:      a.metrics.UpstreamAttempts(),
	})
	if err != nil {
		return nil, fmt.Errorf("upstream client: %w", err)
	}
	a.upstream = client

	authn := a.auth
	tlsConfig := authn.ServerTLS()
	// Interceptor order: metrics and the request id first, then the call
	// and audit lines, so that every call, refused ones included, is
	// counted and logged under its request id; the caller interceptors
	// right after authentication report the identity back out; then the
	// grants decide what that caller may do (its refusals are logged,
	// audited and counted by the interceptors before it). A request message that cannot be read is refused after authentication, before the grants (undecodable.go).
	tel := telemetry.GRPC{Metrics: a.metrics, Tracing: a.tracing, Gateway: isGateway}
	grpcOpts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(tel.UnaryInterceptor(),
			logging.UnaryInterceptor(log, isGateway), recoverUnary(log), authn.UnaryInterceptor(), logging.CallerUnaryInterceptor(),
			refuseUndecodableUnary(), authn.GrantsUnaryInterceptor()),
		grpc.ChainStreamInterceptor(tel.StreamInterceptor(),
			logging.StreamInterceptor(log, isGateway), recoverStream(log), watchStreamLimit(MaxWatchStreams),
			authn.StreamInterceptor(), logging.CallerStreamInterceptor(), refuseUndecodableStream(), authn.GrantsStreamInterceptor(), stallGuard()),
		grpc.InTapHandle(stallTap),
		grpc.MaxRecvMsgSize(maxRecvMsgBytes),
		serverCodec(), // with the two refuseUndecodable interceptors above
		grpc.MaxSendMsgSize(maxSendMsgBytes),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		// Clients may ping no more often than every 10s (pings at a higher
		// rate cost the server and are cut off with GOAWAY). Connections
		// are pinged every 2 minutes and dropped when the peer stops
		// answering; one with no call for idleConnTimeout is closed with
		// GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    2 * time.Minute,
			Timeout: 20 * time.Second,
			// A client keeps one HTTP/2 connection for hours, so behind an
			// L4 balancer (kube-proxy) all its calls would stay on one
			// replica, and replicas added later would get none of them.
			// After MaxConnectionAge (grpc-go adds ±10% jitter, so clients
			// do not all reconnect at once) the server sends GOAWAY: new
			// calls go to a new connection, wherever the balancer puts it,
			// and calls in flight get MaxConnectionAgeGrace to finish, the
			// same bound as a drain (a long List included). Zero is
			// unlimited, in grpc-go as in --max-connection-age. The hop
			// below (the HTTP port's in-memory connection) is not aged.
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: connectionAgeGrace(cfg),
			MaxConnectionIdle:     timeouts.idle,
		}),
	}
	grpcOpts = append(grpcOpts, ServerTuning()...)
	grpcOpts = append(grpcOpts, tel.ServerOptions()...)
	store, records, err := a.openState(cfg, log)
	if err != nil {
		return nil, err
	}
	a.store = store
	svc := service.New(client,
		service.WithCallerRate(store.CallerRate()),
		service.WithRecords(records),
		service.WithReplayed(a.metrics.IdempotentReplay),
		service.WithAudit(logging.Auditor(log)),
		service.WithMetaOmitted(a.metaOmitted(log)))

	// The gRPC port: the stream cap and the request budget hold for each
	// connection, whoever opened it.
	portOpts := append([]grpc.ServerOption{
		grpc.MaxConcurrentStreams(MaxStreamsPerConn),
		grpc.StatsHandler(grpcRequestBudget{}),
	}, grpcOpts...)
	if tlsConfig != nil {
		portOpts = append(portOpts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	a.grpcServer = grpc.NewServer(portOpts...)
	a.grpcServer.RegisterService(tokenServiceDesc(), svc)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpcServer, a.health)
	reflection.Register(a.grpcServer)
	a.metrics.InitializeGRPC(a.grpcServer)

	// The hop: every call of the HTTP port (gateway, Connect, gRPC-Web,
	// SSE) reaches TokenService over the in-memory listener, with the same
	// interceptors as on the gRPC port, but on a server of its own without
	// the stream cap (grpc-go's is per server, not per listener). Its
	// connections are shared by every HTTP caller, so a cap there was one
	// queue for all of them: a caller holding 600 Lists paced by
	// --caller-rate made another's REST Create wait 15 s (it took 6 ms
	// over Connect, whose transport opened a second connection). The
	// streams it carries are bounded where they come in, by each HTTP
	// connection's own cap and body budget. grpc-go hands the connection's
	// flow-control window back as each frame arrives, so a stream whose
	// reader is slow holds up no other. One connection per HTTP connection
	// instead would cost a hop handshake, goroutines and buffers on every
	// new client connection.
	//
	// Its connections are never aged or closed for idleness (the last
	// KeepaliveParams wins): --max-connection-age is for spreading clients
	// over replicas, which a connection inside the process has nothing to
	// do with, and aging it cut every HTTP List still running
	// MaxConnectionAgeGrace after the age, however young its client's own
	// connection, with grpc-go's transport error as the message.
	a.hopServer = grpc.NewServer(append(slices.Clip(grpcOpts), grpc.KeepaliveParams(keepalive.ServerParameters{}))...)
	a.hopServer.RegisterService(tokenServiceDesc(), svc)

	// The gateway's own connection: in memory, see gatewayListener.
	a.gatewayLis = newGatewayListener()
	gatewayOpts := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(telemetry.GatewayUnaryInterceptor()),
		grpc.WithChainStreamInterceptor(telemetry.GatewayStreamInterceptor()),
	}
	if h := a.tracing.ClientHandler(); h != nil {
		// The gateway's client span: the HTTP span's child and the gRPC
		// server span's parent, so one trace runs HTTP → gRPC → upstream.
		gatewayOpts = append(gatewayOpts, grpc.WithStatsHandler(h))
	}
	a.gatewayClient, err = grpc.NewClient("passthrough:///cbkgate-gateway", append(gatewayOpts,
		grpc.WithContextDialer(a.gatewayLis.dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxSendMsgBytes)),
		// As on the server side: no BDP pings on a hop that never leaves the
		// process.
		grpc.WithStaticStreamWindowSize(serverWindowBytes),
		grpc.WithStaticConnWindowSize(serverWindowBytes),
	)...)
	if err != nil {
		return nil, fmt.Errorf("gateway connection: %w", err)
	}
	// Connect and gRPC-Web reach the gRPC server over the gateway's
	// in-memory listener too, authenticated by the HTTP layer like it.
	connectHandler, err := connectapi.New(connectapi.Options{
		Dial:            func(ctx context.Context) (net.Conn, error) { return a.gatewayLis.dial(ctx, "") },
		MaxMessageBytes: httpapi.MaxBodyBytes,
		OnForward:       func(r *http.Request) { telemetry.MarkReachedGRPC(r.Context()) },
		ErrorLog:        logging.ServerErrorLog(log),
	})
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	handler, err := httpapi.New(context.Background(), httpapi.Options{
		Conn:        a.gatewayClient,
		Ready:       a.ready.Load,
		CORSOrigins: cfg.CORSOrigins,
		Auth:        authn.HTTPMiddleware,
		Connect:     connectHandler,
		AfterAuth:   noteHTTPCaller,
		Metadata:    auth.GatewayMetadata,
		Console:     cfg.Console,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	handler = telemetry.HTTPMiddleware(telemetry.HTTPOptions{
		Metrics:   a.metrics,
		Tracing:   a.tracing,
		OnRefused: logging.HTTPRefused(log),
	}, handler)
	a.httpServer = &http.Server{
		Handler:           httpLimits(handler),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: headerTimeout,
		// HTTP/1 keep-alive and HTTP/2 connections alike: net/http's
		// HTTP/2 server takes its idle timeout from here.
		IdleTimeout:    timeouts.idle,
		MaxHeaderBytes: maxHTTPHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          MaxStreamsPerConn,
			MaxReceiveBufferPerConnection: httpConnWindowBytes,
			MaxReceiveBufferPerStream:     httpStreamWindowBytes,
		},
		// Each connection's budget of body bytes (see byteBudget).
		ConnContext: httpConnContext,
		ErrorLog:    logging.ServerErrorLog(log),
	}

	if a.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("--grpc-addr: %w", err)
	}
	if a.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	if cfg.AdminAddr != "" {
		if a.adminLis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			return nil, fmt.Errorf("--admin-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.Handler())
		a.adminServer = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	return a, nil
}

// connectionAgeGrace is how long calls in flight on a connection past its
// --max-connection-age may still run: as long as a drain lets them
// (--shutdown-timeout). Zero (grpc-go: unlimited) when there is no age.
func connectionAgeGrace(cfg *config.Config) time.Duration {
	if cfg.MaxConnectionAge == 0 {
		return 0
	}
	return cfg.ShutdownTimeout
}

// metaOmitted logs (rate-limited: a caller may list the same tokens again
// and again) and counts each token List sent without its meta.
func (a *App) metaOmitted(log *slog.Logger) func(ctx context.Context, userID, tokenID string) {
	warn := logging.Limited(log)
	return func(ctx context.Context, userID, tokenID string) {
		a.metrics.ListMetaOmitted()
		warn(ctx, slog.LevelWarn, "token listed without its meta: nested deeper than cbkgate passes on",
			slog.String("user_id", userID), slog.String("token_id", logging.TruncateID(tokenID)))
	}
}

// noteHTTPCaller passes the caller identity the auth middleware established
// out to the HTTP middleware, for the lines of requests refused after
// authentication (a body too large, say).
func noteHTTPCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		telemetry.NoteHTTPCaller(r.Context(), auth.Caller(r.Context()))
		next.ServeHTTP(w, r)
	})
}

// ConfigError is a configuration error New found: the authentication
// settings or the credential files they name. Like an error of
// config.Load, it is the operator's to fix (exit status 2), unlike a
// failure to start such as a port in use.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// GRPCAddr is the address the gRPC server listens on.
func (a *App) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// HTTPAddr is the address the HTTP server (gateway, health, OpenAPI) listens on.
func (a *App) HTTPAddr() net.Addr { return a.httpLis.Addr() }

// AdminAddr is the address the admin server (/metrics) listens on, nil
// when it is off.
func (a *App) AdminAddr() net.Addr {
	if a.adminLis == nil {
		return nil
	}
	return a.adminLis.Addr()
}

// Run serves until ctx ends, then drains: health turns NOT_SERVING and
// /readyz 503, new calls are refused, and calls in flight get up to the
// shutdown timeout to finish before they are cut off. It returns an error
// only when a server failed while serving.
func (a *App) Run(ctx context.Context) error {
	tlsOn := a.auth.ServerTLS() != nil
	errc := make(chan error, 5)
	serve := func(name string, f func() error) {
		err := f()
		if a.closing.Load() && errors.Is(err, net.ErrClosed) {
			return // shutdown closed the gRPC listener first
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("%s: %w", name, err)
		}
	}
	if a.emulatorServer != nil {
		a.log.Info("emulator listening", "addr", a.emulatorLis.Addr().String(), "note", "dev mode: in-memory ChatBotKit stand-in")
		go serve("emulator", func() error { return a.emulatorServer.Serve(a.emulatorLis) })
	}
	if a.adminServer != nil {
		go serve("admin", func() error { return a.adminServer.Serve(a.adminLis) })
	}
	// The credential files are watched while the server runs; Run returns
	// only once the watcher has stopped.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		a.auth.Watch(watchCtx, 0)
	}()
	defer func() {
		stopWatch()
		<-watchDone
	}()
	go serve("grpc", func() error { return a.grpcServer.Serve(a.grpcLis) })
	go serve("gateway", func() error { return a.hopServer.Serve(a.gatewayLis) })
	go serve("http", func() error {
		if tlsOn {
			return a.httpServer.ServeTLS(a.httpLis, "", "")
		}
		return a.httpServer.Serve(a.httpLis)
	})

	a.log.Info("grpc listening", "addr", a.GRPCAddr().String(), "tls", tlsOn)
	a.log.Info("http listening", "addr", a.HTTPAddr().String(), "tls", tlsOn, "serves", "gateway /v1, Connect and gRPC-Web "+connectapi.Prefix+", /healthz, /readyz, /openapi.json")
	a.logState()
	if a.adminServer != nil {
		a.log.Info("admin listening", "addr", a.AdminAddr().String(), "serves", "/metrics")
	}
	a.auth.LogGrants(a.log)
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	a.health.SetServingStatus(tokenv1.TokenService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	a.ready.Store(true)
	// The last start line, written once the server is ready: whoever waits
	// for it (an operator, a test) finds /readyz 200 and every other start
	// line written.
	// "pid" is the process to send SIGHUP to; under `go run` that is not
	// the go command's.
	a.log.Info("cbkgate serving", "pid", os.Getpid(), "version", version.Version(), "revision", version.Revision(), "tracing", a.tracing.Enabled(), "auth", a.auth, "upstream", a.cfg.Upstream.String(), "config", a.cfg)

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout.String())
	case runErr = <-errc:
		a.log.Error("server failed, shutting down", "err", runErr)
	}
	a.shutdown()
	return runErr
}

// shutdown drains, bounded by the shutdown timeout. The gRPC server drains
// first: it refuses new calls (the gateway's included, which then answer
// 503) and waits for those in flight. The HTTP listener stays open
// meanwhile, so probes see /readyz answer 503 rather than a refused
// connection; once no call is left it closes too. Calls still running at
// the timeout are cancelled and logged; that is still an orderly exit.
func (a *App) shutdown() {
	// No new connection from here on, before anything reports the drain:
	// a client that saw NOT_SERVING (or /readyz's 503) and still dials is
	// refused, never served. GracefulStop closes the listener too, but
	// only once its goroutine runs, which can be after the health update.
	a.closing.Store(true)
	a.grpcLis.Close()
	a.ready.Store(false)
	a.health.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	grpcDone := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Go(a.grpcServer.GracefulStop)
		wg.Go(a.hopServer.GracefulStop)
		wg.Wait()
		close(grpcDone)
	}()
	select {
	case <-grpcDone:
	case <-ctx.Done():
		// Calls still running past the timeout are cancelled.
		a.grpcServer.Stop()
		a.hopServer.Stop()
		<-grpcDone
	}
	// Every gRPC call has ended, so HTTP requests have at most their last
	// bytes to write.
	if err := a.httpServer.Shutdown(ctx); err != nil {
		a.httpServer.Close()
	}
	a.gatewayClient.Close()
	// No call is left, so the upstream connections are idle: close them
	// rather than leave them open until ChatBotKit or the idle timeout does.
	a.upstream.CloseIdleConnections()
	a.store.Close()

	if ctx.Err() != nil {
		a.log.Warn("shutdown timeout reached: calls still in flight were cut off", "timeout", a.cfg.ShutdownTimeout.String())
	}
	if a.emulatorServer != nil {
		// The facade has drained, so nothing needs the emulator any more.
		a.emulatorServer.Close()
	}
	// Metrics stay scrapable through the drain; spans still buffered are
	// exported, within a bound of their own so a dead collector cannot hold
	// the exit.
	if a.adminServer != nil {
		a.adminServer.Close()
	}
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancelFlush()
	if err := a.tracing.Shutdown(flushCtx); err != nil {
		a.log.Warn("tracing: spans not exported at exit", "err", err)
	}
	a.log.Info("stopped")
}

// Reload re-reads the credential files (keys, secret file, TLS key pair)
// and the grants file, as on SIGHUP. A file that fails to load changes
// nothing; the error is logged and returned.
func (a *App) Reload() error { return a.auth.Reload("SIGHUP") }

func (a *App) closeListeners() {
	for _, l := range []net.Listener{a.grpcLis, a.httpLis, a.emulatorLis, a.adminLis} {
		if l != nil {
			l.Close()
		}
	}
	if a.gatewayClient != nil {
		a.gatewayClient.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
	if a.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		_ = a.tracing.Shutdown(ctx)
	}
}

// tracingFlushTimeout bounds the export of the last spans at exit.
const tracingFlushTimeout = 5 * time.Second

// recoverUnary and recoverStream turn a panic in a handler into INTERNAL
// for that one call instead of taking down every other call with it.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ss.Context(), "panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(srv, ss)
	}
}
