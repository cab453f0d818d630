# syntax=docker/dockerfile:1
# Build: a static binary (no cgo), so the runtime image needs no libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/cbkgate ./cmd/server

# Runtime: distroless static carries CA certificates (for TLS to ChatBotKit)
# and a non-root user, and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cbkgate /cbkgate
USER nonroot:nonroot
# gRPC, then HTTP (JSON gateway, /healthz, /readyz, /openapi.json).
EXPOSE 9090 8080
ENTRYPOINT ["/cbkgate"]
