# syntax=docker/dockerfile:1
# mcpauthz container image: a static binary on distroless, running as the
# non-root user 65532, with the example policy bundles under
# /etc/mcpauthz/bundles. Build: docker build -t mcpauthz:dev .
#
# Ports: 9191 gRPC (Envoy ext_authz, grpc.health.v1), 8181 HTTP (/healthz,
# /readyz, /metrics, RFC 9728 metadata). Mount a config at
# /etc/mcpauthz/config/mcpauthz.yaml or pass `serve --config PATH`.

# The Go release go.mod names (deploy_test checks they agree).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Module downloads are cached in their own layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git is not in the build context: pass what `mcpauthz version` prints,
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) -t mcpauthz:dev .
ARG VERSION=
ARG COMMIT=
# CGO off: a fully static binary that runs on distroless/static (no libc).
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/mcpauthz ./cmd/mcpauthz \
 && mkdir -p /out/bundles \
 && cp -r bundles/rbac bundles/abac bundles/guardrails bundles/scopes /out/bundles/

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mcpauthz /usr/local/bin/mcpauthz
COPY --from=build /out/bundles /etc/mcpauthz/bundles
USER 65532:65532
EXPOSE 9191 8181
ENTRYPOINT ["/usr/local/bin/mcpauthz"]
CMD ["serve", "--config", "/etc/mcpauthz/config/mcpauthz.yaml"]
