# The modelx CLI, as the storage initializer of Seldon Core. Seldon runs the
# image with two arguments, the model URI and the destination, so the
# entrypoint is `modelx pull`: the container runs `modelx pull URI DEST`.
# For any other command, override the entrypoint (--entrypoint modelx, or
# `command: [modelx]` in a pod). Build from the repository root:
#   docker build -f build/modelx.Dockerfile -t modelx/modelx:dev .
# or `make images`.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o /out/modelx ./cmd/modelx
# The runtime's whole filesystem besides the binary: CA certificates (the
# registry and identity provider are reached over HTTPS), a user, /tmp, and
# a home directory for the CLI's configuration.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/modelx \
    && chmod 1777 /rootfs/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && echo 'modelx:x:65532:65532:modelx:/home/modelx:/sbin/nologin' > /rootfs/etc/passwd \
    && echo 'modelx:x:65532:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/etc /etc
COPY --from=build /rootfs/tmp /tmp
COPY --from=build --chown=65532:65532 /rootfs/home/modelx /home/modelx
COPY --from=build /out/modelx /usr/local/bin/modelx
ENV HOME=/home/modelx PATH=/usr/local/bin
USER 65532:65532
WORKDIR /home/modelx
ENTRYPOINT ["/usr/local/bin/modelx", "pull"]
