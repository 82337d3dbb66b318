# flowtap appliance image (completed by the deployment issue).
# Build stage: Rust toolchain plus clang/libbpf for the XDP program.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends clang llvm libbpf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p flowtap

# Runtime stage: a slim Debian with just the binary.
FROM debian:bookworm-slim
COPY --from=build /src/target/release/flowtap /usr/local/bin/flowtap
ENTRYPOINT ["/usr/local/bin/flowtap"]
