# flowtap appliance image.
#
# Build: docker build -t flowtap --build-arg FLOWTAP_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
# (the commit `flowtap --version` and /metrics give; .git is not sent)
# Run (SPAN port; flow data on a reachable address needs a bearer token):
#   docker run --network host --cap-add BPF --cap-add NET_ADMIN \
#     --cap-add NET_RAW --cap-add IPC_LOCK -v /etc/flowtap/token-65532:/token:ro \
#     flowtap -i eth1 --listen 0.0.0.0:8898 --auth-token-file /token
# (the token in a file the image's user can read:
#   sudo install -m 400 -o 65532 /etc/flowtap/token /etc/flowtap/token-65532)
# The binary carries those four capabilities as file capabilities, so it runs
# as a non-root user; a capture's container must still be granted them. They
# are permitted only, raised when it captures: `flowtap hub`, `-r` and
# `healthcheck` run in a container granted none.

# Build stage: Rust, plus clang and libbpf's headers for the XDP program.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang llvm libbpf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG FLOWTAP_GIT_COMMIT=
RUN ./scripts/build-release.sh /stage

# Runtime stage: a slim Debian with the two binaries.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /stage/usr/local/bin/ /usr/local/bin/
COPY scripts/install-caps.sh /usr/local/share/flowtap/install-caps.sh
RUN /usr/local/share/flowtap/install-caps.sh /usr/local/bin \
    && apt-get purge -y libcap2-bin && apt-get autoremove -y \
    && find / -xdev -perm /6000 -type f -exec chmod a-s {} +
USER 65532:65532
EXPOSE 8898
# Asks /healthz on the admin listener (127.0.0.1:8899 by default).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["/usr/local/bin/flowtap", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/flowtap"]
CMD ["--help"]
