# Multi-stage build: compile in the Rust image, run in a slim Debian as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/dlq-dashboard /dlq-dashboard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /data dlq
COPY --from=build /dlq-dashboard /usr/local/bin/dlq-dashboard
USER dlq
WORKDIR /data
# Inside a container the dashboard must listen on all interfaces to be reachable; outside
# one, the default stays 127.0.0.1. All interfaces need authentication, so the users file
# lives in the volume too: until `docker exec -it CONTAINER dlq-dashboard user add NAME
# --role admin` has added someone, only /healthz is served. The index and its search file
# (/data/dlq-dashboard.search.db, derived from the index and rebuilt if missing) live in the
# volume.
ENV DLQ_LISTEN=0.0.0.0:8080 \
    DLQ_DATABASE=/data/dlq-dashboard.db \
    DLQ_USERS=/data/users.json
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/dlq-dashboard"]
CMD ["serve"]
