# modelx-controller, the ModelDeployment controller. Build from the
# repository root:
#   docker build -f build/modelx-controller.Dockerfile -t modelx/modelx-controller:dev .
# or `make images`.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# VERSION tags the default --initializer-image, modelx/modelx:VERSION.
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o /out/modelx-controller ./cmd/modelx-controller
# The runtime's whole filesystem besides the binary.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
    && chmod 1777 /rootfs/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && echo 'modelx:x:65532:65532:modelx:/:/sbin/nologin' > /rootfs/etc/passwd \
    && echo 'modelx:x:65532:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/etc /etc
COPY --from=build /rootfs/tmp /tmp
COPY --from=build /out/modelx-controller /usr/local/bin/modelx-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/modelx-controller"]
