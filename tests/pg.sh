#!/bin/sh
# A throwaway PostgreSQL server for the tests: its cluster, socket and log live in DIR, it listens on
# a free loopback port with trust authentication (loopback and the socket only), and nothing of the
# machine's own clusters is touched.
#
#   tests/pg.sh up DIR      initdb DIR/data (first time) and start; prints the server's URL
#                           (postgresql://postgres@127.0.0.1:PORT/postgres), also kept in DIR/url
#   tests/pg.sh down DIR    stop it (fast shutdown), keeping the cluster; `up DIR` starts it again
#                           on the same port
#   tests/pg.sh clean DIR   stop it and remove DIR
#
# initdb refuses to run as root, so as root the server runs as the `postgres` system user the
# Debian package creates (runuser), and DIR is chowned to it. DIR is created when missing.
set -eu
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|down|clean DIR" >&2; exit 2; }

bindir=""
for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/initdb" ] && { bindir=$d; break; }
done
[ -n "$bindir" ] || { echo "pg.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() {
    port=$(cat "$dir/port")
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -s \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off" start
}

case $cmd in
up)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        if [ "$(id -u)" = 0 ]; then
            chown postgres: "$dir"
            runuser -u postgres -- test -w "$dir" \
                || { echo "pg.sh: user postgres cannot reach $dir (a parent directory is closed to it): use a directory under /tmp" >&2; exit 1; }
        fi
        as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
        # the server answers loopback only (listen_addresses), and pg_hba lets loopback and the socket in
        printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' \
            | as_pg tee "$dir/data/pg_hba.conf" >/dev/null
    fi
    if as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        cat "$dir/url"; exit 0
    fi
    # a port taken between free_port and the server's bind: try another (a saved port is kept when
    # it is free, so `down` then `up` gives the same URL)
    tries=0
    while :; do
        [ -f "$dir/port" ] || free_port | as_pg tee "$dir/port" >/dev/null
        pg_start && break
        tries=$((tries + 1))
        [ $tries -lt 5 ] || { tail -n 20 "$dir/server.log" >&2; exit 1; }
        as_pg rm -f "$dir/port"
    done
    printf 'postgresql://postgres@127.0.0.1:%s/postgres\n' "$(cat "$dir/port")" | as_pg tee "$dir/url"
    ;;
down)
    [ -d "$dir/data" ] || exit 0
    as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || exit 0
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 -s stop
    ;;
clean)
    if [ -d "$dir/data" ] && as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 -s stop || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 up|down|clean DIR" >&2; exit 2 ;;
esac
