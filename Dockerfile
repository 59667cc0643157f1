# Multi-stage build of the three Mee services: listen, update, sync.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libsasl2-dev libzstd-dev \
      liblz4-dev libssl-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin listen --bin update --bin sync

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libsasl2-2 libzstd1 liblz4-1 \
      libssl3 libcurl4 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/listen /src/target/release/update \
     /src/target/release/sync /usr/local/bin/
COPY conf /etc/mee
WORKDIR /etc/mee
USER 10001
ENV MEE_CONFIG=/etc/mee/app.toml
EXPOSE 9101 9102 9103
CMD ["listen", "--help"]
