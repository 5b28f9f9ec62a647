# modelxd, the registry server. Build from the repository root:
#   docker build -f build/modelxd.Dockerfile -t modelx/modelxd:dev .
# or `make images`. The runtime image holds the static binary, CA
# certificates, an unprivileged user (65532) and the data directory /data,
# where the filesystem backend stores (mount a volume there). With S3 the
# directory is unused.

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
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o /out/modelxd ./cmd/modelxd
# The runtime's whole filesystem besides the binary.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/data \
    && chmod 1777 /rootfs/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && echo 'modelx:x:65532:65532:modelx:/data:/sbin/nologin' > /rootfs/etc/passwd \
    && echo 'modelx:x:65532:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/etc /etc
COPY --from=build /rootfs/tmp /tmp
COPY --from=build --chown=65532:65532 /rootfs/data /data
COPY --from=build /out/modelxd /usr/local/bin/modelxd
ENV MODELXD_LISTEN=:8080 MODELXD_DATA_DIR=/data
USER 65532:65532
WORKDIR /data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/modelxd"]
