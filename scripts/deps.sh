#!/bin/sh
# Installs (mode "install") or checks (mode "check") the Debian packages kailashd needs to build and
# test (clang and libclang-rt-14-dev: libFuzzer, for `make fuzz`). Installs only as root; otherwise
# says what to install.
PKGS="build-essential pkg-config libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libhiredis-dev \
libpq-dev libssl-dev libgnutls28-dev libcriterion-dev python3-pytest python3-requests python3-yaml python3-prometheus-client python3-jwt python3-cryptography redis-server postgresql wrk nginx-light \
clang libclang-rt-14-dev"
# node and npm run the OpenAPI validator of the tests (tests/openapi): Debian's packages unless a node
# and an npm are on PATH already.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

# tests/openapi/node_modules from the committed lockfile (npm ci, never global), when it is missing
# or older than the lockfile. A stamp records the lockfile it was installed from.
npm_deps() {
    dir="$(dirname "$0")/../tests/openapi"
    stamp="$dir/node_modules/.kailash-lock"
    if [ -d "$dir/node_modules" ] && [ -f "$stamp" ] && cmp -s "$dir/package-lock.json" "$stamp"; then
        return 0
    fi
    if [ "$1" = check ]; then
        echo "deps: tests/openapi/node_modules is missing or stale: run make deps"
        return 1
    fi
    echo "deps: npm ci in tests/openapi"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) && cp "$dir/package-lock.json" "$stamp"
}

if [ -z "$missing" ]; then
    npm_deps "$1"
    exit $?
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || exit 1
    # Debian starts services from postinst; we start our own on free ports, so ask it not to.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq $missing; rc=$?
    rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || exit $rc
    npm_deps "$1"
    exit $?
fi
echo "deps: missing packages:$missing"
echo "deps: install them with: sudo apt-get install -y$missing"
[ "$1" = check ] && exit 1
exit 1
