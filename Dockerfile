# syntax=docker/dockerfile:1
#
# failover-bot container image: the Rust binary on distroless (glibc), non-root.
#
#   docker build -t failover-bot .                      # builds from source (default)
#   cargo build --release --locked && \
#   docker build --target prebuilt -t failover-bot .    # copies target/release/failover-bot
#
# The `prebuilt` target ships the binary CI already built and tested (CI runs
# `cargo build --release --locked`), so the image holds that binary; it must be
# built for the image's platform (Linux, same CPU architecture, glibc <= 2.36 as
# in Debian 12).
#
# Both targets strip the debug info (the release profile keeps line tables:
# ~226 MB → ~35 MB); symbol names stay, so backtraces still name functions.

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- builder: compiles from source, dependencies in their own cached layer
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies first: this layer is rebuilt only when Cargo.toml/Cargo.lock
# change. Cargo needs every target the manifest names, so the benches come along
# and the library and binary are stand-ins. Afterwards the stand-ins' build
# state is removed: COPY may give the real sources an older mtime than these
# artifacts, and cargo would then keep the empty binary.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src \
           target/release/.fingerprint/failover-bot-* \
           target/release/deps/failover_bot-* target/release/deps/libfailover_bot-* \
           target/release/failover-bot*
COPY src ./src
# The sandbox's built-in config is compiled in (include_str!).
COPY examples ./examples
RUN cargo build --release --locked \
 && strip --strip-debug -o /usr/local/bin/failover-bot target/release/failover-bot

# ---- the prebuilt binary, stripped (the builder image has binutils)
FROM ${RUST_IMAGE} AS prebuilt-binary
COPY target/release/failover-bot /tmp/failover-bot
RUN strip --strip-debug -o /usr/local/bin/failover-bot /tmp/failover-bot

# ---- runtime: what both image targets share
FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="failover-bot" \
      org.opencontainers.image.description="Fails production traffic over between Kubernetes clusters from Slack, with a second engineer's approval." \
      org.opencontainers.image.licenses="Apache-2.0"
# The binary embeds a font (the drill chart); its licence travels with it.
COPY assets/fonts/ /usr/share/doc/failover-bot/fonts/
# distroless's `nonroot` user; manifests/home/deployment.yaml runs as the same id.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/failover-bot"]
# As in manifests/home/deployment.yaml (a test keeps them equal).
CMD ["serve", "--config", "/etc/failover-bot/config.yaml", "--listen", "0.0.0.0:8080", "--journal", "kube", "--leader-election", "--log-format", "json"]

# ---- prebuilt: the binary from `cargo build --release --locked` on the host/CI
FROM runtime AS prebuilt
COPY --from=prebuilt-binary /usr/local/bin/failover-bot /usr/local/bin/failover-bot

# ---- image (default, last): the binary built above
FROM runtime AS image
COPY --from=builder /usr/local/bin/failover-bot /usr/local/bin/failover-bot
