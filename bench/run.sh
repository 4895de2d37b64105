#!/bin/sh
# bench/run.sh: load benchmark of kailashd with nginx as the baseline, both measured in the same run
# on the same machine, so the ratios mean something even when absolute numbers move between hosts.
#
#   sh bench/run.sh /abs/path/build/kailashd        (this is what `make bench` runs)
#   BENCH_DURATION=3s sh bench/run.sh build/kailashd (quick smoke)
#
# Targets (all on 127.0.0.1, ports picked free at start):
#   nginx static      GET  /static          nginx `return 200` of a small JSON body
#   kailashd (a)      POST /workflows/bench_transform/run   one TransformNode, no I/O
#   kailashd (py)     POST /workflows/bench_python/run      one PythonCodeNode (`result = {"n": n + 1}`,
#                     n given as the node's parameter): a round trip to a Python worker, as py/a
#   kailashd (k), (j) (a)'s workflow on a second kailashd with authentication on, called with an
#                     X-API-Key (k) or an RS256 bearer token (j): the auth step's cost, as k/a and j/a.
#   kailashd (ch)     (a)'s workflow with a response cache, the same request repeated: an L1 hit,
#                     against nginx static. (c2): 20,000 distinct requests (BENCH_VARY) on the
#                     Redis instance with a 1 MiB L1: after the first pass, mostly L2 hits.
#   kailashd (l), (r) (a)'s workflow with the rate limiter on (limits above the load): local (l), or
#                     shared through a redis-server started here (r), as l/a and r/a, and Redis
#                     commands per (r) request (redis-server's commandstats).
#   nginx proxy_pass  GET  /proxy           nginx proxying to its own /static (keepalive 64, HTTP/1.1)
#   kailashd (b)      POST /workflows/bench_http/run        one HTTPRequestNode GET of nginx /static
#   kailashd (f)      POST /workflows/bench_fanout/run      one HTTPRequestNode GET of nginx /slow
#                     (200 ms, echo module) under BENCH_FANOUT_CONNECTIONS (1000) clients: with no
#                     thread held per upstream call, completed req/s approaches conns / 0.2 s.
#   nginx /slow direct  GET /slow with the fan-out's connections: what client and upstream allow.
#   nginx proxy_pass https  GET /proxy_tls   nginx proxying to its own /static over TLS (keepalive 64)
#   kailashd (h)      POST /workflows/bench_https/run       one HTTPRequestNode GET of nginx /static
#                     over TLS (self-signed cert made by `openssl req` in the temp dir, verify_ssl
#                     off): the libcurl way out, with a fresh easy handle per call.
#   nginx static, close / kailashd (c)   (a)'s two loads with `Connection: close` on every request:
#                     the connect-heavy load (wrk opens a new connection for each request).
#
# Besides wrk's req/s and latency, each load reports the servers' CPU per request (kailashd and all
# nginx processes, from /proc, during the measured run): on a shared host it moves far less than
# req/s, and for (b) against proxy_pass it counts the same two hops (nginx serves the backend in both).
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]  BENCH_WARMUP [1s, 0 = none]  BENCH_THREADS [2]  BENCH_CONNECTIONS [64]
#   BENCH_FANOUT_CONNECTIONS [1000]  BENCH_WORKERS [2: kailashd workers and nginx worker_processes]
#   BENCH_LOG_LEVEL [warn]  BENCH_VERBOSE [0: 1 shows each probe's answer]  BENCH_KEEP [0: 1 keeps the temp dir with configs, logs, wrk output]
#   BENCH_LOADS [all: a space-separated list of load keys to run, e.g. "ngx_proxy kls_b"; keys are
#   ngx_static kls_a kls_py kls_y kls_n kls_p kls_ch kls_c2 kls_k kls_j kls_l kls_r ngx_proxy kls_b ngx_proxy_tls kls_h ngx_close kls_c
#   ngx_slow kls_f]
#   NGINX [/usr/sbin/nginx]  WRK [wrk]
#
# Everything runs in a mktemp dir that is removed on exit; only the nginx and kailashd processes this
# script started are stopped (by PID). Exit status: 0 when every load ran, 1 on a setup failure.
# shellcheck disable=SC3045,SC2317  # ulimit -n/-H: dash and bash have them; cleanup runs from trap
set -u

BIN=${1:-}
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    echo "usage: sh bench/run.sh /abs/path/to/kailashd  (got '${BIN}': not an executable)" >&2
    exit 2
fi
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-1s}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-64}
FAN_CONNS=${BENCH_FANOUT_CONNECTIONS:-1000}
WORKERS=${BENCH_WORKERS:-2}
LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
BODY='{"inputs":{"user":"bench","n":42}}'

for tool in "$NGINX" "$WRK" curl openssl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: '$tool' not found (make deps)" >&2; exit 1; }
done
[ -f "$ECHO_MODULE" ] || { echo "bench: $ECHO_MODULE missing (apt-get install libnginx-mod-http-echo)" >&2; exit 1; }

# 1000 client sockets in wrk, as many on the gateway, and as many again to the upstream
hard=$(ulimit -H -n)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
if [ "$(ulimit -n)" -lt $((FAN_CONNS * 2 + 256)) ]; then
    echo "bench: warning: open-file limit $(ulimit -n) is low for $FAN_CONNS fan-out connections" >&2
fi

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
T=$(mktemp -d "${TMPDIR:-/tmp}/kailashd-bench.XXXXXX") || exit 1
chmod 755 "$T" # nginx workers drop to an unprivileged user when started as root
NGINX_PID=
KAILASH_PID=
AUTH_PID=
rll_PID=
rlr_PID=
rn_PID=
rp_PID=
REDIS_PID=
PG_DIR=

is_running() { # a zombie child counts as stopped
    [ -r "/proc/$1/stat" ] || return 1
    [ "$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat")" != Z ]
}

stop_pid() {
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
    i=0
    while [ $i -lt 150 ] && is_running "$1"; do sleep 0.1; i=$((i + 1)); done
    is_running "$1" && kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

cleanup() {
    stop_pid "$KAILASH_PID"
    stop_pid "$AUTH_PID"
    stop_pid "$rll_PID"
    stop_pid "$rlr_PID"
    stop_pid "$rn_PID"
    stop_pid "$rp_PID"
    [ -n "$PG_DIR" ] && sh "$HERE/../tests/pg.sh" clean "$PG_DIR" >/dev/null 2>&1
    stop_pid "$REDIS_PID"
    stop_pid "$NGINX_PID"
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "bench: $*" >&2
    for f in "$T"/nginx/error.log "$T"/kailashd.log; do
        [ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    while :; do # curl exit 7 = connection refused: nobody listens there
        p=$(awk 'BEGIN { srand(); print 20000 + int(rand() * 40000) }')
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/"
        [ $? -eq 7 ] && { echo "$p"; return; }
    done
}

# wait_up URL PID: until URL answers 2xx (0), PID exits (1), or 15 s pass (2)
wait_up() {
    i=0
    while ! curl -sf -o /dev/null --max-time 1 "$1"; do
        is_running "$2" || return 1
        i=$((i + 1))
        [ $i -ge 150 ] && return 2
        sleep 0.1
    done
    return 0
}

# wait_http URL PID NAME: wait_up, or fail naming what did not come up
wait_http() {
    wait_up "$1" "$2"
    case $? in
    1) die "$3 exited during start-up" ;;
    2) die "$3 did not answer $1 within 15 s" ;;
    esac
}

NGINX_PORT=$(free_port)
KAILASH_PORT=$(free_port)
[ "$NGINX_PORT" != "$KAILASH_PORT" ] || KAILASH_PORT=$(free_port)
TLS_PORT=$(free_port)
while [ "$TLS_PORT" = "$NGINX_PORT" ] || [ "$TLS_PORT" = "$KAILASH_PORT" ]; do TLS_PORT=$(free_port); done
AUTH_PORT=$(free_port)
RLL_PORT=$(free_port)
RLR_PORT=$(free_port)
REDIS_PORT=$(free_port)
RN_PORT=$(free_port)
RP_PORT=$(free_port)
while [ "$AUTH_PORT" = "$NGINX_PORT" ] || [ "$AUTH_PORT" = "$KAILASH_PORT" ] || [ "$AUTH_PORT" = "$TLS_PORT" ]; do
    AUTH_PORT=$(free_port)
done

# ---------------------------------------------------------------- nginx
mkdir -p "$T/nginx"
# a self-signed certificate for the TLS loads (kailashd's bench_https skips verification)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -keyout "$T/nginx/tls.key" \
    -out "$T/nginx/tls.crt" >"$T/nginx/openssl.log" 2>&1 || die "openssl req could not make a certificate"
cat >"$T/nginx/nginx.conf" <<EOF
load_module $ECHO_MODULE;
daemon off;
worker_processes $WORKERS;
worker_rlimit_nofile $(ulimit -n);
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $T/nginx/client_body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    keepalive_requests 1000000;
    upstream static_backend {
        server 127.0.0.1:$NGINX_PORT;
        keepalive 64;
    }
    upstream tls_backend {
        server 127.0.0.1:$TLS_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$TLS_PORT ssl backlog=4096;
        ssl_certificate $T/nginx/tls.crt;
        ssl_certificate_key $T/nginx/tls.key;
        default_type application/json;
        location = /static {
            return 200 '{"ok":true,"service":"nginx","items":[1,2,3]}';
        }
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        default_type application/json;
        location = /static {
            return 200 '{"ok":true,"service":"nginx","items":[1,2,3]}';
        }
        location = /slow {
            echo_sleep 0.2;
            echo '{"ok":true,"slow_ms":200}';
        }
        location = /proxy {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://static_backend/static;
        }
        location = /proxy_tls {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_session_reuse on;
            proxy_pass https://tls_backend/static;
        }
    }
}
EOF
"$NGINX" -p "$T/nginx/" -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf" </dev/null >"$T/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
NGX="http://127.0.0.1:$NGINX_PORT"
wait_http "$NGX/static" "$NGINX_PID" nginx
curl -sf -o /dev/null --max-time 2 "$NGX/slow" || die "nginx /slow (echo module) does not answer"
curl -sf -o /dev/null --max-time 2 "$NGX/proxy" || die "nginx /proxy does not answer"
curl -sfk -o /dev/null --max-time 2 "https://127.0.0.1:$TLS_PORT/static" || die "nginx TLS /static does not answer"
curl -sf -o /dev/null --max-time 2 "$NGX/proxy_tls" || die "nginx /proxy_tls does not answer"

# ---------------------------------------------------------------- kailashd
mkdir -p "$T/workflows" "$T/var"
for f in "$HERE"/workflows/*.json; do
    sed -e "s/@NGINX_PORT@/$NGINX_PORT/g" -e "s/@TLS_PORT@/$TLS_PORT/g" "$f" >"$T/workflows/$(basename "$f")"
done

# Rate limiting defaults to 100 anonymous requests a minute per client IP, and all of wrk is one
# client: (a), (b) and the others run with the limiter off, as before it existed ((l) and (r) measure
# it). A build from before rate limiting refuses the key, so it is left out for one (see below).
write_config() { # $1 = 1: turn the rate limiter off
    rl=
    [ "$1" = 1 ] && rl='"rate_limiting": {"enabled": false},'
    cat >"$T/kailashd.json" <<EOF
{
  "host": "127.0.0.1", "port": $KAILASH_PORT, "workers": $WORKERS,
  "workflows_dir": "$T/workflows", "data_dir": "$T/var",
  $rl
  "log": {"level": "$LOG_LEVEL"}
}
EOF
}

start_kailashd() {
    # access log (stdout) to /dev/null: nginx runs with access_log off
    "$BIN" --config "$T/kailashd.json" </dev/null >/dev/null 2>"$T/kailashd.log" &
    KAILASH_PID=$!
}

KLS="http://127.0.0.1:$KAILASH_PORT"
write_config 1
start_kailashd
if ! wait_up "$KLS/health" "$KAILASH_PID" && grep -q rate_limiting "$T/kailashd.log"; then
    stop_pid "$KAILASH_PID"
    echo "bench: this build refuses rate_limiting settings (from before rate limiting); running without them"
    write_config 0
    start_kailashd
fi
wait_http "$KLS/health" "$KAILASH_PID" kailashd

# A second kailashd with authentication on, for (k) and (j): the same one-node workflow as (a),
# called with an API key, or with an RS256 token (a 2048-bit key made here, the token signed with
# openssl), both compared with (a) in the same run. Started only when one of its loads is chosen.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
start_auth_kailashd() {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/jwt.key" 2>/dev/null &&
        openssl pkey -in "$T/jwt.key" -pubout -out "$T/jwt.pub" 2>/dev/null || die "openssl: no RSA key for (j)"
    exp=$(($(date +%s) + 86400))
    hdr=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
    pay=$(printf '{"sub":"bench","exp":%s,"roles":["bench"]}' "$exp" | b64url)
    sig=$(printf '%s.%s' "$hdr" "$pay" | openssl dgst -sha256 -sign "$T/jwt.key" -binary | b64url)
    BENCH_TOKEN="$hdr.$pay.$sig"
    BENCH_API_KEY=bench-key-0123456789abcdef
    digest=$(printf '%s' "$BENCH_API_KEY" | sha256sum | cut -d' ' -f1)
    cat >"$T/auth.json" <<EOF
{
  "host": "127.0.0.1", "port": $AUTH_PORT, "workers": $WORKERS,
  "workflows_dir": "$T/workflows", "data_dir": "$T/var-auth",
  "enable_auth": true, $rl
  "auth": {"api_keys": [{"id": "bench", "sha256": "$digest", "roles": ["bench"]}],
           "jwt": {"public_key_file": "$T/jwt.pub"}},
  "log": {"level": "$LOG_LEVEL"}
}
EOF
    "$BIN" --config "$T/auth.json" </dev/null >/dev/null 2>"$T/auth.log" &
    AUTH_PID=$!
    wait_http "$KLA/health" "$AUTH_PID" "kailashd (auth)"
}
KLA="http://127.0.0.1:$AUTH_PORT"
case " ${BENCH_LOADS:-kls_k} " in *" kls_k "* | *" kls_j "*) start_auth_kailashd ;; esac

# (l) and (r): (a)'s workflow on a kailashd with the rate limiter on (limits far above the load, so
# every request is checked and passes), locally (l) or through a redis-server started here (r).
# a kailashd of its own for one load: NAME PORT SETTINGS (JSON members, each followed by a comma)
start_extra_kailashd() {
    cat >"$T/$1.json" <<EOF
{
  "host": "127.0.0.1", "port": $2, "workers": $WORKERS,
  "workflows_dir": "$T/workflows", "data_dir": "$T/var-$1", $3
  "log": {"level": "$LOG_LEVEL"}
}
EOF
    "$BIN" --config "$T/$1.json" </dev/null >/dev/null 2>"$T/$1.log" &
    eval "${1}_PID=\$!"
    wait_http "http://127.0.0.1:$2/health" "$(eval echo "\$${1}_PID")" "kailashd ($1)"
}
start_rl_kailashd() { # NAME PORT [REDIS_URL [EXTRA_JSON]]
    redis=
    [ -n "${3:-}" ] && redis="\"redis_url\": \"$3\", ${4:-}"
    start_extra_kailashd "$1" "$2" "$redis \"rate_limiting\": {\"authenticated\": 1000000000, \"anonymous\": 1000000000},"
}
KLL="http://127.0.0.1:$RLL_PORT"
KLR="http://127.0.0.1:$RLR_PORT"
case " ${BENCH_LOADS:-kls_l} " in *" kls_l "*) start_rl_kailashd rll "$RLL_PORT" ;; esac
case " ${BENCH_LOADS:-kls_r} " in *" kls_r "* | *" kls_c2 "*)
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found (make deps)"
    mkdir -p "$T/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$T/redis" \
        --daemonize no --loglevel warning >"$T/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
    start_rl_kailashd rlr "$RLR_PORT" "redis://127.0.0.1:$REDIS_PORT/0" '"cache": {"l1_max_bytes": 1048576},'
    # the breaker starts closed once connected: wait for /ready to say so
    for _ in $(seq 100); do curl -s "$KLR/ready" | grep -q '"redis":"ok"' && break; sleep 0.05; done
    ;;
esac
# (n) and (p): (a)'s workflow with run records off, and with them in a PostgreSQL server started
# here (tests/pg.sh: a throwaway cluster on a free loopback port), against (a), whose records go to
# the embedded journal (the default). After each of (a) and (p) the records written are counted
# against wrk's requests.
start_store_kailashd() { # NAME PORT STORE_JSON
    start_extra_kailashd "$1" "$2" "$3, \"rate_limiting\": {\"enabled\": false},"
}
KLN="http://127.0.0.1:$RN_PORT"
KLP="http://127.0.0.1:$RP_PORT"
case " ${BENCH_LOADS:-kls_n} " in *" kls_n "*) start_store_kailashd rn "$RN_PORT" '"store": {"enabled": false}' ;; esac
case " ${BENCH_LOADS:-kls_p} " in *" kls_p "*)
    PG_DIR="$T/pg"
    PG_URL=$(sh "$HERE/../tests/pg.sh" up "$PG_DIR") || die "tests/pg.sh could not start PostgreSQL (make deps)"
    start_store_kailashd rp "$RP_PORT" "\"database_url\": \"$PG_URL\""
    for _ in $(seq 100); do curl -s "$KLP/ready" | grep -q '"postgres":"ok"' && break; sleep 0.05; done
    ;;
esac
# records kept so far: journal lines of (a), rows of (p)
records() { # records KEY
    case $1 in
    kls_a) cat "$T"/var/runs/*.jsonl 2>/dev/null | wc -l ;;
    kls_p) psql -X -At -d "$PG_URL" -c 'SELECT count(*) FROM runs' 2>/dev/null || echo 0 ;;
    *) echo 0 ;;
    esac
}
# records written during a load: the store writes behind, so wait until the count stops growing
records_settled() { # records_settled KEY
    prev=-1 cur=$(records "$1")
    while [ "$cur" != "$prev" ]; do sleep 1; prev=$cur; cur=$(records "$1"); done
    echo "$cur"
}

# commands clients sent: EVALSHA and EVAL, and anything else but the scripts' own (TIME, GET, SET:
# commandstats counts those too) and this INFO
redis_calls() { redis-cli -p "$REDIS_PORT" info commandstats 2>/dev/null | tr -d '\r' |
    awk -F'[:=,]' '/^cmdstat_(evalsha|eval|ping|auth|select|script)/ { n += $3 } END { print n + 0 }'; }

# (y): async accepts of (a)'s workflow; after wrk stops, the seconds until no accepted run is left
# queued or running (GET /runs?status=...), for the end-to-end completion rate
async_left() {
    for st in queued running; do
        curl -s "$KLS/runs?workflow=bench_transform&status=$st&limit=1" | grep -q '"runs":\[\]' || { echo 1; return; }
    done
    echo 0
}
async_drain_s() {
    t0=$(date +%s.%N)
    for _ in $(seq 600); do [ "$(async_left)" = 0 ] && break; sleep 0.1; done
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}

# ---------------------------------------------------------------- load
# probe URL [BODY]: one request; prints the HTTP status (000 = no answer), keeps the body
probe() {
    if [ $# -gt 1 ]; then
        curl -s -o "$T/probe.body" -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' \
            ${BENCH_HEADER:+-H "$BENCH_HEADER"} --data "$2" "$1"
    else
        curl -s -o "$T/probe.body" -w '%{http_code}' --max-time 5 "$1"
    fi
}

# CPU (utime + stime, in clock ticks) of the servers: kailashd, nginx's master and its workers. Both
# count in every load, so (b), which makes nginx serve the backend, compares with proxy_pass, where
# nginx does both hops.
proc_ticks() {
    if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; else echo 0; fi
}
# the PostgreSQL server's processes (the postmaster and its children), for (p)
pg_ticks() {
    pm=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null)
    [ -n "$pm" ] || { echo 0; return; }
    total=$(proc_ticks "$pm")
    for st in /proc/[0-9]*/stat; do
        ppid=$(sed 's/^.*) //' "$st" 2>/dev/null | awk '{ print $2 }')
        [ "$ppid" = "$pm" ] && total=$((total + $(proc_ticks "$(basename "$(dirname "$st")")")))
    done
    echo "$total"
}
server_ticks() {
    total=$(($(proc_ticks "$KAILASH_PID") + $(proc_ticks "$AUTH_PID") + $(proc_ticks "$rll_PID") +
        $(proc_ticks "$rlr_PID") + $(proc_ticks "$rn_PID") + $(proc_ticks "$rp_PID") + $(proc_ticks "$REDIS_PID") +
        $(proc_ticks "$NGINX_PID")))
    for st in /proc/[0-9]*/stat; do
        ppid=$(sed 's/^.*) //' "$st" 2>/dev/null | awk '{ print $2 }')
        [ "$ppid" = "$NGINX_PID" ] && total=$((total + $(proc_ticks "$(basename "$(dirname "$st")")")))
    done
    echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# load KEY LABEL CONNS URL [BODY [CLOSE [HEADER]]]   CLOSE=1: a new connection per request;
# HEADER ("Name: value") is sent with every request
load() {
    key=$1 label=$2 conns=$3 url=$4 body=${5:-} close=${6:-0} header=${7:-}
    case " ${BENCH_LOADS:-$key} " in *" $key "*) ;; *) return 0 ;; esac
    case $url in "$KLS"*) wait_http "$KLS/health" "$KAILASH_PID" kailashd ;; esac
    if [ -n "$body" ]; then code=$(BENCH_HEADER=$header probe "$url" "$body"); else code=$(probe "$url"); fi
    case $code in
    2??) [ "${BENCH_VERBOSE:-0}" = 1 ] && echo "bench: $label: probe $code: $(head -c 300 "$T/probe.body")" ;;
    *) echo "bench: warning: $label: probe answered $code: $(head -c 300 "$T/probe.body" 2>/dev/null)" ;;
    esac
    echo "bench: $label: wrk -t$THREADS -c$conns -d$DURATION --latency $url"
    wait_max=2s # wrk's default; the fan-out queues behind 200 ms answers, so give it longer
    [ "$conns" -gt 256 ] && wait_max=10s
    if [ "$WARMUP" != 0 ]; then
        BENCH_HEADER=$header BENCH_CLOSE=$close BENCH_BODY=$body "$WRK" -t"$THREADS" -c"$conns" -d"$WARMUP" --timeout "$wait_max" \
            -s "$HERE/wrk.lua" "$url" >/dev/null 2>&1
    fi
    case $key in kls_a | kls_p) rec0=$(records_settled "$key") ;; esac
    [ "$key" = kls_p ] && pticks0=$(pg_ticks)
    ticks0=$(server_ticks)
    [ "$key" = kls_r ] && calls0=$(redis_calls) && rticks0=$(proc_ticks "$REDIS_PID")
    BENCH_HEADER=$header BENCH_CLOSE=$close BENCH_BODY=$body "$WRK" -t"$THREADS" -c"$conns" -d"$DURATION" --timeout "$wait_max" --latency \
        -s "$HERE/wrk.lua" "$url" >"$T/wrk.$key.out" 2>&1
    ticks=$(($(server_ticks) - ticks0))
    [ "$key" = kls_p ] && pticks=$(($(pg_ticks) - pticks0))
    [ "$key" = kls_r ] && calls1=$(redis_calls) && rticks1=$(proc_ticks "$REDIS_PID")
    line=$(grep '^BENCH ' "$T/wrk.$key.out")
    case $key in kls_a | kls_p) [ -n "$line" ] && line="$line records=$(($(records_settled "$key") - rec0))" ;; esac
    [ "$key" = kls_y ] && [ -n "$line" ] && line="$line drain_s=$(async_drain_s)"
    [ -n "$line" ] && line="$line cpu_us=$(awk -v t="$ticks" -v u="$TICK_US" -v n="$(echo "$line" |
        sed -n 's/.* requests=\([0-9]*\).*/\1/p')" 'BEGIN { printf "%.1f", (n > 0 ? t * u / n : 0) }')"
    if [ -z "$line" ]; then
        echo "bench: warning: $label: wrk gave no result:" >&2
        sed 's/^/    /' "$T/wrk.$key.out" >&2
    fi
    printf '%s|%s|%s|%s\n' "$key" "$label" "$conns" "$code" >"$T/res.$key"
    printf '%s\n' "$line" >>"$T/res.$key"
}

load ngx_static "nginx static" "$CONNS" "$NGX/static"
load kls_a "kailashd (a) transform" "$CONNS" "$KLS/workflows/bench_transform/run" "$BODY"
load kls_py "kailashd (py) PythonCodeNode" "$CONNS" "$KLS/workflows/bench_python/run" '{"parameters":{"inc":{"n":42}}}'
load kls_y "kailashd (y) async accept" "$CONNS" "$KLS/workflows/bench_transform/run?mode=async" "$BODY"
load kls_k "kailashd (k) transform, API key" "$CONNS" "$KLA/workflows/bench_transform/run" "$BODY" 0 \
    "X-API-Key: ${BENCH_API_KEY:-}"
load kls_j "kailashd (j) transform, JWT RS256" "$CONNS" "$KLA/workflows/bench_transform/run" "$BODY" 0 \
    "Authorization: Bearer ${BENCH_TOKEN:-}"
load kls_n "kailashd (n) transform, no records" "$CONNS" "$KLN/workflows/bench_transform/run" "$BODY"
load kls_p "kailashd (p) transform, Postgres" "$CONNS" "$KLP/workflows/bench_transform/run" "$BODY"
load kls_ch "kailashd (ch) cached, L1 hit" "$CONNS" "$KLS/workflows/bench_cached/run" "$BODY"
# (c2): 20,000 distinct requests against a 1 MiB L1 on the Redis instance: the first pass computes
# and stores, then most requests are L1 misses answered from L2
export BENCH_VARY=20000
load kls_c2 "kailashd (c2) cached, L2 hits" "$CONNS" "$KLR/workflows/bench_cached/run" "$BODY"
unset BENCH_VARY
load kls_l "kailashd (l) transform, rate limit" "$CONNS" "$KLL/workflows/bench_transform/run" "$BODY"
load kls_r "kailashd (r) rate limit, Redis" "$CONNS" "$KLR/workflows/bench_transform/run" "$BODY"
load ngx_proxy "nginx proxy_pass" "$CONNS" "$NGX/proxy"
load kls_b "kailashd (b) http node" "$CONNS" "$KLS/workflows/bench_http/run" "$BODY"
load ngx_proxy_tls "nginx proxy_pass https" "$CONNS" "$NGX/proxy_tls"
load kls_h "kailashd (h) https node" "$CONNS" "$KLS/workflows/bench_https/run" "$BODY"
load ngx_close "nginx static, conn: close" "$CONNS" "$NGX/static" "" 1
load kls_c "kailashd (c) transform, close" "$CONNS" "$KLS/workflows/bench_transform/run" "$BODY" 1
load ngx_slow "nginx /slow direct" "$FAN_CONNS" "$NGX/slow"
load kls_f "kailashd (f) fan-out 200ms" "$FAN_CONNS" "$KLS/workflows/bench_fanout/run" "$BODY"

is_running "$KAILASH_PID" || echo "bench: warning: kailashd is no longer running after the load"

# ---------------------------------------------------------------- report
val() { # val KEY FIELD
    [ -f "$T/res.$1" ] && sed -n "2s/.* $2=\([^ ]*\).*/\1/p" "$T/res.$1"
}

echo
echo "kailashd bench  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(uname -n)  $(nproc) CPUs  load at start $LOAD_AT_START  duration $DURATION  wrk -t$THREADS"
echo "binary: $BIN ($("$BIN" --version 2>/dev/null | head -n 1))  $("$NGINX" -v 2>&1)  workers $WORKERS each"
printf '%-28s %6s %11s %9s %9s %9s %8s %7s %6s %12s\n' target conns "req/s" "p50 ms" "p99 ms" "max ms" non-2xx errors probe \
    "cpu us/req"
for key in ngx_static kls_a kls_py kls_y kls_n kls_p kls_ch kls_c2 kls_k kls_j kls_l kls_r ngx_proxy kls_b ngx_proxy_tls kls_h ngx_close kls_c ngx_slow kls_f; do
    [ -f "$T/res.$key" ] || continue # not among BENCH_LOADS
    IFS='|' read -r _ label conns code <"$T/res.$key"
    if [ -z "$(val "$key" rps)" ]; then
        printf '%-28s %6s %11s\n' "$label" "$conns" "(no result)"
        continue
    fi
    errs=$(($(val "$key" connect_err) + $(val "$key" read_err) + $(val "$key" write_err) + $(val "$key" timeouts)))
    printf '%-28s %6s %11s %9s %9s %9s %8s %7s %6s %12s\n' "$label" "$conns" "$(val "$key" rps)" \
        "$(val "$key" p50_ms)" "$(val "$key" p99_ms)" "$(val "$key" max_ms)" "$(val "$key" non2xx)" "$errs" "$code" \
        "$(val "$key" cpu_us)"
done

ratio() { # ratio KEY_NUMERATOR KEY_DENOMINATOR
    a=$(val "$1" ok_rps) b=$(val "$2" rps)
    if [ -n "$a" ] && [ -n "$b" ]; then awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; else echo n/a; fi
}
echo
echo "kailashd(a) / nginx static      = $(ratio kls_a ngx_static)   (2xx req/s over req/s)"
echo "kailashd(ch) / nginx static     = $(ratio kls_ch ngx_static)   (a cached answer, L1 hit; p99 $(val kls_ch p99_ms) ms)"
echo "kailashd(c2) / nginx static     = $(ratio kls_c2 ngx_static)   (mostly L2 hits through Redis)"
cpu_ratio() { # cpu_ratio KEY_A KEY_B: server CPU per request of A over B (steadier than req/s on a busy host)
    a=$(val "$1" cpu_us) b=$(val "$2" cpu_us)
    if [ -n "$a" ] && [ -n "$b" ]; then awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; else echo n/a; fi
}
echo "kailashd(a) / kailashd(n)        = $(ratio kls_a kls_n)   (run records in the journal, over records off)"
echo "kailashd(p) / kailashd(n)        = $(ratio kls_p kls_n)   (run records in Postgres, over records off)"
echo "kailashd's CPU per request: (a) $(val kls_a cpu_us) us, (p) $(val kls_p cpu_us) us, (n) $(val kls_n cpu_us) us" \
    "(records cost (a) $(cpu_ratio kls_a kls_n)x, (p) $(cpu_ratio kls_p kls_n)x of (n)'s);" \
    "Postgres's own CPU per (p) request: $(awk -v t="${pticks:-0}" -v u="$TICK_US" -v n="$(val kls_p requests)" \
        'BEGIN { printf "%.1f", (n > 0 ? t * u / n : 0) }') us"
for key in kls_a kls_p; do
    [ -n "$(val $key records)" ] && echo "records written during $key: $(val $key records) for $(val $key requests) wrk requests" \
        "(counted after the warm-up; up to $CONNS more finish after wrk stops)"
done
if [ -n "$(val kls_y requests)" ]; then
    echo "kailashd(y) / kailashd(a)        = $(ratio kls_y kls_a)   (async accepts, 202 once the queued record is synced, over sync runs)"
    echo "async end to end: $(val kls_y ok) runs accepted in $(val kls_y secs) s, the last finished $(val kls_y drain_s) s after wrk stopped:" \
        "$(awk -v n="$(val kls_y ok)" -v a="$(val kls_y secs)" -v b="$(val kls_y drain_s)" \
            'BEGIN { printf "%.0f", (a + b > 0 ? n / (a + b) : 0) }') completed runs/s"
fi
echo "kailashd(py) / kailashd(a)       = $(ratio kls_py kls_a)   (one PythonCodeNode over one TransformNode; target >= 0.25; p99 $(val kls_py p99_ms) ms vs $(val kls_a p99_ms) ms)"
echo "kailashd(k) / kailashd(a)        = $(ratio kls_k kls_a)   (auth on, API key, over auth off)"
echo "kailashd(j) / kailashd(a)        = $(ratio kls_j kls_a)   (auth on, JWT RS256, over auth off)"
echo "kailashd(l) / kailashd(a)        = $(ratio kls_l kls_a)   (rate limiter on, local, over off)"
echo "kailashd(r) / kailashd(a)        = $(ratio kls_r kls_a)   (rate limiter on, Redis, over off)"
if [ -n "$REDIS_PID" ] && [ -n "$(val kls_r requests)" ]; then
    echo "Redis commands per (r) request: $(awk -v c=$((calls1 - calls0)) -v n="$(val kls_r requests)" \
        'BEGIN { printf "%.2f", c / n }') ($((calls1 - calls0)) EVALSHA/EVAL/other client commands for" \
        "$(val kls_r requests) requests, redis-server's commandstats); redis-server's own CPU:" \
        "$(awk -v t=$((rticks1 - rticks0)) -v u="$TICK_US" -v n="$(val kls_r requests)" \
            'BEGIN { printf "%.1f", t * u / n }') us per request (in (r)'s cpu us/req)"
fi
echo "kailashd(b) / nginx proxy_pass  = $(ratio kls_b ngx_proxy)"
echo "kailashd(h) / nginx proxy_pass https = $(ratio kls_h ngx_proxy_tls)"
echo "kailashd(c) / nginx static, close = $(ratio kls_c ngx_close)   (a new connection per request)"
echo "server CPU per request (kailashd + nginx processes, /proc): (a) $(val kls_a cpu_us) us vs nginx static" \
    "$(val ngx_static cpu_us) us ($(cpu_ratio kls_a ngx_static)x); (b) $(val kls_b cpu_us) us vs proxy_pass" \
    "$(val ngx_proxy cpu_us) us ($(cpu_ratio kls_b ngx_proxy)x); (h) $(val kls_h cpu_us) us vs proxy_pass https" \
    "$(val ngx_proxy_tls cpu_us) us ($(cpu_ratio kls_h ngx_proxy_tls)x); (c) $(val kls_c cpu_us) us vs nginx static," \
    "close $(val ngx_close cpu_us) us ($(cpu_ratio kls_c ngx_close)x)"
if [ -n "$(val kls_f ok_rps)" ]; then
    ideal=$(awk -v c="$FAN_CONNS" 'BEGIN { printf "%.0f", c / 0.2 }')
    echo "fan-out: $(val kls_f ok) completed 2xx, $(val kls_f ok_rps) 2xx req/s (ideal $ideal = $FAN_CONNS conns / 200 ms)," \
        "p50 $(val kls_f p50_ms) ms, p99 $(val kls_f p99_ms) ms, non-2xx $(val kls_f non2xx);" \
        "nginx /slow direct: $(val ngx_slow rps) req/s"
fi
exit 0
