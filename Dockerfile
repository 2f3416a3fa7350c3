# imcol container image: a static collector binary on a minimal non-root base.
# Build: docker build -t imcol .    Run: docker run -p 4317:4317 -p 4318:4318 -p 8889:8889 -p 13133:13133 imcol

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" go build -ldflags='-s -w' -o /out/imcol ./cmd/imcol \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/imcol /imcol
COPY configs/default.yaml /etc/imcol/config.yaml
COPY configs/rules /etc/imcol/rules
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/imcol
# Inside a container the endpoints must listen on every interface to be reachable.
ENV IMCOL_OTLP_GRPC_ENDPOINT=0.0.0.0:4317 \
    IMCOL_OTLP_HTTP_ENDPOINT=0.0.0.0:4318 \
    IMCOL_PROMETHEUS_ENDPOINT=0.0.0.0:8889 \
    IMCOL_TELEMETRY_HOST=0.0.0.0 \
    IMCOL_HEALTH_ENDPOINT=0.0.0.0:13133 \
    IMCOL_DATA_DIR=/var/lib/imcol \
    IMCOL_RULES_DIR=/etc/imcol/rules
USER nonroot:nonroot
# OTLP gRPC, OTLP HTTP, Prometheus exporter, own metrics, health check
EXPOSE 4317 4318 8889 8888 13133
ENTRYPOINT ["/imcol"]
CMD ["--config", "/etc/imcol/config.yaml"]
