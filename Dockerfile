# zoho-auth-proxy container image.
#
#   docker build -t zoho-auth-proxy .
#   docker run --rm --read-only \
#     -v "$PWD/proxy.yaml:/etc/zoho-auth-proxy/proxy.yaml:ro" \
#     -v "$PWD/secrets:/run/secrets/zoho:ro" \
#     -v zoho-proxy-state:/var/lib/zoho-auth-proxy \
#     -p 127.0.0.1:8080:8080 -p 127.0.0.1:9901:9901 zoho-auth-proxy
#
# Listening address: in a Kubernetes pod the app container shares the pod's network namespace, so keep
# `listen: 127.0.0.1:8080` (the default, and the safe choice). With `docker run -p` the published port
# reaches the container's eth0, not its loopback, so there the config needs `listen: 0.0.0.0:8080`
# together with `allow_remote_clients: true`; publish it on the host's loopback only, as above.
# The admin listener (health, readiness, metrics; never credentialed) is `admin.listen`.
#
# Two stages: a Debian bookworm Rust toolchain builds the release binary; the runtime is distroless
# `cc-debian12` (glibc + libgcc only, same Debian release as the builder), user `nonroot` (65532), no
# shell. Everything is read-only at run time except the token store, a volume.

# ---------------------------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS builder

WORKDIR /build

# Dependency layer: build every dependency against placeholder sources, so a change to `src/` only
# recompiles this crate. `--locked` makes the build fail instead of silently changing Cargo.lock.
# `.cargo` and `pgo` make the build profile-guided (pgo/rustc-wrapper; bench/README.md): without them
# the image's binary would be the slower one.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY pgo ./pgo
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources. Cargo decides what to rebuild from mtimes, and COPY keeps the build context's
# mtimes, which may be older than the placeholder build: drop the crate's own fingerprints so it is
# always rebuilt from what was copied.
COPY src ./src
RUN rm -rf target/release/.fingerprint/zoho-auth-proxy-* \
           target/release/deps/zoho_auth_proxy-* \
           target/release/deps/libzoho_auth_proxy-* \
    && cargo build --release --locked --bin zoho-auth-proxy \
    && install -D -m 0755 target/release/zoho-auth-proxy /out/usr/local/bin/zoho-auth-proxy \
    && install -d -m 0700 /out/var/lib/zoho-auth-proxy /out/run/zoho-auth-proxy \
    && install -d -m 0755 /out/etc/zoho-auth-proxy

# ---------------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="zoho-auth-proxy" \
      org.opencontainers.image.description="Scope-enforcing reverse proxy that injects continually refreshed Zoho CRM OAuth tokens" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"

COPY --from=builder /out/usr/local/bin/zoho-auth-proxy /usr/local/bin/zoho-auth-proxy
# State and socket directories owned by the runtime user, so the image also works without volumes when
# the root filesystem is writable. With `--read-only` (or readOnlyRootFilesystem in Kubernetes) mount a
# volume on /var/lib/zoho-auth-proxy (token store), and on /run/zoho-auth-proxy for a Unix socket.
COPY --from=builder --chown=65532:65532 /out/var/lib/zoho-auth-proxy /var/lib/zoho-auth-proxy
COPY --from=builder --chown=65532:65532 /out/run/zoho-auth-proxy /run/zoho-auth-proxy
# Config directory: mount proxy.yaml here (a ConfigMap in Kubernetes). Secrets go under /run/secrets/zoho
# and are referenced from proxy.yaml with `client_secret_file` / `refresh_token_file`.
COPY --from=builder /out/etc/zoho-auth-proxy /etc/zoho-auth-proxy

# The config file the binary reads when `--config` is not given.
ENV ZOHO_PROXY_CONFIG=/etc/zoho-auth-proxy/proxy.yaml

USER 65532:65532
VOLUME ["/var/lib/zoho-auth-proxy"]

# 8080: the proxy (`listen`), 9901: admin (`admin.listen`: /healthz, /readyz, /metrics, /status).
EXPOSE 8080 9901

# SIGTERM drains in-flight requests (`shutdown.grace`); SIGHUP reloads the config.
STOPSIGNAL SIGTERM

# No HEALTHCHECK: the image has no shell or HTTP client. Orchestrators probe the admin port instead
# (see examples/kubernetes/deployment.yaml).
ENTRYPOINT ["/usr/local/bin/zoho-auth-proxy"]
