# Build the manager binary
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=v0.1.0-dev

WORKDIR /workspace
# Copy the Go Modules manifests
COPY go.mod go.mod
COPY go.sum go.sum
# cache deps before building and copying source so that we don't need to re-download as much
# and so that source changes don't invalidate our downloaded layer
RUN go mod download

# Copy the Go source (relies on .dockerignore to filter)
COPY cmd/manager/ cmd/manager/
COPY api/ api/
COPY internal/ internal/

# Build a static binary. GOARCH has no default value so that the binary is built
# for the platform of the host where the command was called.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath \
    -ldflags "-s -w -X github.com/resilience-dev/breaker-operator/internal/version.Version=${VERSION}" \
    -o manager ./cmd/manager

# Use distroless as minimal base image to package the manager binary: no shell,
# no package manager, and the nonroot user (65532).
# Refer to https://github.com/GoogleContainerTools/distroless for more details
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager .
USER 65532:65532

ENTRYPOINT ["/manager"]
