# syntax=docker/dockerfile:1
#
# The production image: a static cbkgate on distroless, run as a numeric
# non-root user, with nothing in it to write to, no shell and no package
# manager. Build it with
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION="$(git rev-parse HEAD)" -t cbkgate .
#
# CI has no Docker engine and no registry, so it cannot pull the two base
# images below. It builds the same final stage from deploy/image/Containerfile.ci
# instead (FROM scratch, with the same files, user, environment, ports, entry
# point and health check), with buildah, and runs it as 65532 with a
# read-only root file system (internal/clustertest, README "Running in
# production"). TestCIImageMatchesDockerfile fails when the two final stages
# drift apart: change them together.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The version and revision go into the binary (cbkgate --version, the
# cbkgate_build_info metric, the upstream User-Agent); without them the
# binary reports what the Go build info knows.
ARG VERSION=""
ARG REVISION=""
# Static (no cgo), so the runtime image needs no libc; -trimpath keeps build
# paths out of the binary. The cache mounts (the golang image's GOMODCACHE
# and GOCACHE) keep modules and compiled packages between builds; only what
# ./cmd/server imports is downloaded, not the code generators go.mod pins.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X github.com/cbkgate/cbkgate/internal/version.version=${VERSION} -X github.com/cbkgate/cbkgate/internal/version.revision=${REVISION}" \
      -o /out/cbkgate ./cmd/server

# distroless static: CA certificates (TLS to ChatBotKit), /etc/passwd with
# user 65532 (nonroot), tzdata; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cbkgate /cbkgate
# Numeric, so that Kubernetes can check runAsNonRoot without a passwd
# lookup (a name such as "nonroot" makes the kubelet refuse the pod).
USER 65532:65532
# Listen on every interface inside the container: dev mode (--emulator)
# would otherwise keep to loopback, unreachable through a published port.
# `cbkgate healthcheck` reads CBKGATE_HTTP_ADDR too.
ENV CBKGATE_GRPC_ADDR=:9090 \
    CBKGATE_HTTP_ADDR=:8080 \
    CBKGATE_ADMIN_ADDR=:9091
# gRPC; HTTP (JSON gateway, /healthz, /readyz, /openapi.json); admin (/metrics).
EXPOSE 9090 8080 9091
# No shell or curl in the image: the binary probes its own /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/cbkgate", "healthcheck"]
ENTRYPOINT ["/cbkgate"]
