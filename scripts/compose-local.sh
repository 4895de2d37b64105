#!/bin/sh
# The docker-compose topology on loopback, with real processes and no Docker engine: two kailashd
# gateways with conf/compose.json's settings, nginx with conf/nginx-compose.conf (its upstream line
# rewritten to the two gateways), Redis, and PostgreSQL (tests/pg.sh). Then it checks what the
# deployment promises, printing one line per check:
#
#   a run through nginx; a cache hit on the other gateway (L2 through Redis); a rate limit shared by
#   both gateways; a run record readable from both (Postgres).
#
#   scripts/compose-local.sh /abs/path/to/kailashd     exit 0 when every check passed
#
# Everything lives in a temporary directory and is stopped and removed at exit (KEEP=1 keeps it).
set -eu
BIN=${1:-}
[ -x "$BIN" ] || { echo "usage: $0 /abs/path/to/kailashd" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
NGINX=${NGINX:-/usr/sbin/nginx}
for tool in "$NGINX" redis-server curl python3 psql; do
    command -v "$tool" >/dev/null 2>&1 || { echo "compose-local: '$tool' not found (make deps)" >&2; exit 2; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/kailash-compose.XXXXXX")
chmod 755 "$T" # nginx's workers run as an unprivileged user when started as root
PIDS=""
cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    sh "$REPO/tests/pg.sh" clean "$T/pg" >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then echo "compose-local: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "compose-local: FAILED: $*"
    for f in "$T"/g1.log "$T"/g2.log "$T"/nginx/error.log; do
        [ -s "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }
    done
    exit 1
}
ok() { echo "compose-local: $*: ok"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # URL: until it answers 200, 15 s at most
    i=0
    while [ $i -lt 300 ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ] && return 0
        sleep 0.05
        i=$((i + 1))
    done
    fail "$1 did not answer 200"
}

# ---- Redis and Postgres
RP=$(free_port)
mkdir -p "$T/redis"
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$T/redis" --daemonize no \
    --loglevel warning >"$T/redis.log" 2>&1 &
PIDS="$PIDS $!"
PG_URL=$(sh "$REPO/tests/pg.sh" up "$T/pg") || fail "PostgreSQL did not start"

# ---- two gateways: conf/compose.json with loopback addresses, a data_dir each, the repo's workflows
# and two of the script's own (a cached one and a rate-limited one)
mkdir -p "$T/workflows"
cp "$REPO"/workflows/*.json "$T/workflows/"
cat >"$T/workflows/compose_cached.json" <<'EOF'
{"version": "1", "description": "compose-local: a cached answer", "gateway": {"cache": {"ttl_s": 60}},
 "nodes": {"t": {"node_type": "TransformNode", "config": {"template": {"x": "{{ inputs.x }}"}}}}, "connections": []}
EOF
cat >"$T/workflows/compose_limited.json" <<'EOF'
{"version": "1", "description": "compose-local: a narrow rate limit", "gateway": {"rate_limit": {"requests_per_minute": 5}},
 "nodes": {"t": {"node_type": "TransformNode", "config": {"template": {"ok": true}}}}, "connections": []}
EOF
G1=$(free_port)
G2=$(free_port)
for g in 1 2; do
    port=$(eval echo "\$G$g")
    python3 - "$REPO/conf/compose.json" "$T/g$g.json" "$port" "$T/workflows" "$T/var$g" <<'EOF'
import json, sys
src, dst, port, wfs, var = sys.argv[1:]
cfg = json.load(open(src))
cfg.update({"host": "127.0.0.1", "port": int(port), "workers": 2, "workflows_dir": wfs, "data_dir": var})
cfg["trusted_proxies"] = list(cfg.get("trusted_proxies", [])) + ["127.0.0.1/32"]  # nginx, here on loopback
json.dump(cfg, open(dst, "w"))
EOF
    mkdir -p "$T/var$g"
    KAILASH_REDIS_URL="redis://127.0.0.1:$RP/0" KAILASH_DATABASE_URL="$PG_URL" \
        "$BIN" --config "$T/g$g.json" >/dev/null 2>"$T/g$g.log" &
    PIDS="$PIDS $!"
done
wait_http "http://127.0.0.1:$G1/ready"
wait_http "http://127.0.0.1:$G2/ready"

# ---- nginx with the compose config, its upstream rewritten to the two gateways
NP=$(free_port)
mkdir -p "$T/nginx"
sed -e "s|^\( *\)server gateway:8000 \(.*\)# compose-local: gateways|\1server 127.0.0.1:$G1 \2\n\1server 127.0.0.1:$G2 \2|" \
    -e "s|^\( *\)listen 8000;|\1listen 127.0.0.1:$NP;|" "$REPO/conf/nginx-compose.conf" >"$T/nginx/default.conf"
grep -q "127.0.0.1:$G2" "$T/nginx/default.conf" || fail "conf/nginx-compose.conf: no '# compose-local: gateways' line to rewrite"
cat >"$T/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $T/nginx/client_body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    include $T/nginx/default.conf;
}
EOF
"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" &
PIDS="$PIDS $!"
NG="http://127.0.0.1:$NP"
wait_http "$NG/health"

post() { # URL BODY [HEADER]: prints "STATUS X-CACHE RUN_ID"
    curl -s -o "$T/body" -D "$T/head" --max-time 10 -H 'Content-Type: application/json' ${3:+-H "$3"} \
        -d "$2" "$1" >/dev/null
    code=$(sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$T/head")
    xc=$(sed -n 's/^[Xx]-[Cc]ache: *\([A-Z0-9-]*\).*/\1/p' "$T/head")
    id=$(sed -n 's/^[Xx]-[Rr]un-[Ii][Dd]: *\([0-9a-f-]*\).*/\1/p' "$T/head")
    echo "$code ${xc:-none} ${id:-none}"
}

# ---- the checks
set -- $(post "$NG/workflows/hello/run" '{"inputs": {"name": "compose"}}')
[ "$1" = 200 ] && grep -q 'Hello, compose!' "$T/body" || fail "a run through nginx answered $1: $(cat "$T/body")"
RUN_ID=$3
ok "a run through nginx (run $RUN_ID)"

X=$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
set -- $(post "http://127.0.0.1:$G1/workflows/compose_cached/run" "{\"inputs\": {\"x\": \"$X\"}}")
[ "$1 $2" = "200 MISS" ] || fail "the first cached run on gateway 1: $1 $2"
set -- $(post "http://127.0.0.1:$G2/workflows/compose_cached/run" "{\"inputs\": {\"x\": \"$X\"}}")
[ "$1 $2" = "200 HIT-L2" ] || fail "the same run on gateway 2 was not an L2 hit: $1 $2"
ok "a cache hit on the other gateway (L2 through Redis)"

# one client (the same X-Forwarded-For through a trusted proxy) alternating between the gateways:
# the workflow's 5 a minute hold across both, so the 6th is refused
codes=""
for i in 1 2 3 4 5 6; do
    g=$(( i % 2 == 1 ? G1 : G2 ))
    set -- $(post "http://127.0.0.1:$g/workflows/compose_limited/run" '{}' "X-Forwarded-For: 203.0.113.9")
    codes="$codes $1"
done
[ "$codes" = " 200 200 200 200 200 429" ] || fail "a shared rate limit: answers were$codes"
ok "a rate limit shared by both gateways (answers$codes)"

for g in $G1 $G2; do
    i=0
    until [ "$(curl -s -o "$T/rec" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$g/runs/$RUN_ID")" = 200 ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "run $RUN_ID's record is not readable on the gateway at port $g"
        sleep 0.1
    done
    grep -q "\"run_id\":\"$RUN_ID\"" "$T/rec" || fail "the record read on port $g is not run $RUN_ID's"
done
rows=$(psql -X -At -d "$PG_URL" -c "SELECT count(*) FROM runs WHERE run_id = '$RUN_ID'")
[ "$rows" = 1 ] || fail "run $RUN_ID has $rows rows in Postgres"
ok "a run record readable from both gateways (one row in Postgres)"
echo "compose-local: all checks passed"
