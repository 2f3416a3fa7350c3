# imcol container image, built the way the upstream collector releases build theirs: the static
# binary that `make build` made (CGO off) copied into an empty image. Build it with `make image`
# (podman, no daemon), which also stages the CA bundle and the state folder under .build/image/;
# after `make image-context`, `docker build -t imcol:0.1.0 .` builds the same image.
FROM scratch

ARG USER_UID=10001
ARG USER_GID=10001

COPY scripts/image/passwd scripts/image/group /etc/
COPY .build/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chmod=755 bin/imcol bin/imcol-healthcheck /
COPY configs/default.yaml /etc/imcol/config.yaml
COPY configs/sidecar.yaml configs/gateway.yaml configs/backends.yaml /etc/imcol/
COPY configs/rules/ /etc/imcol/rules/
COPY configs/targets/ /etc/imcol/targets/
# A named volume mounted here starts with this folder's owner, so the non-root user can write it.
COPY --chown=${USER_UID}:${USER_GID} .build/image/state/ /var/lib/imcol/

# Inside a container the endpoints must listen on every interface to be reachable.
ENV IMCOL_OTLP_GRPC_ENDPOINT=0.0.0.0:4317 \
    IMCOL_OTLP_HTTP_ENDPOINT=0.0.0.0:4318 \
    IMCOL_PROMETHEUS_ENDPOINT=0.0.0.0:8889 \
    IMCOL_TELEMETRY_HOST=0.0.0.0 \
    IMCOL_HEALTH_ENDPOINT=0.0.0.0:13133 \
    IMCOL_DATA_DIR=/var/lib/imcol \
    IMCOL_RULES_DIR=/etc/imcol/rules \
    IMCOL_TARGETS_DIR=/etc/imcol/targets

USER ${USER_UID}:${USER_GID}
WORKDIR /var/lib/imcol
# OTLP gRPC, OTLP HTTP, Prometheus exporter, own metrics, health check
EXPOSE 4317 4318 8889 8888 13133
VOLUME ["/var/lib/imcol"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/imcol-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/imcol"]
CMD ["--config", "/etc/imcol/config.yaml"]
