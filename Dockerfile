# kailashd container image: a build stage with the -dev packages, a slim runtime stage with only the
# shared libraries, the binary, the configs and the example workflows.
#
#   docker build -t kailashd .
#   docker run --rm -p 8000:8000 kailashd
#   docker run --rm -p 8000:8000 -v $PWD/workflows:/opt/kailashd/workflows:ro kailashd
#
# Layout in the image mirrors the repository, so the daemon's defaults (conf/kailashd.json,
# workflows/, var/) work from WORKDIR /opt/kailashd.

FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential pkg-config \
        libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libssl-dev libgnutls28-dev libhiredis-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include include
COPY src src
# db/migrations/*.sql are embedded into the binary by scripts/embed_sql.sh at build time
COPY scripts scripts
COPY db db
RUN make -j"$(nproc)" \
 && strip build/kailashd

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libmicrohttpd12 libjansson4 libcurl4 libssl3 libgnutls30 libhiredis0.14 libpq5 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /opt/kailashd --shell /usr/sbin/nologin kailashd
COPY --from=build /src/build/kailashd /usr/local/bin/kailashd
RUN if ldd /usr/local/bin/kailashd | grep 'not found'; then echo "missing runtime library" >&2; exit 1; fi
WORKDIR /opt/kailashd
COPY conf conf
COPY workflows workflows
# run data (journal, spool): the only directory the daemon writes; everything else stays root-owned
RUN mkdir var && chown kailashd:kailashd var
VOLUME /opt/kailashd/var

USER kailashd
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS --max-time 2 "http://127.0.0.1:${KAILASH_PORT:-8000}/health" >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/kailashd"]
