#!/bin/sh
# Installs (mode "install") or checks (mode "check") the Debian packages kailashd needs to build and
# test (clang and libclang-rt-14-dev: libFuzzer, for `make fuzz`). Installs only as root; otherwise
# says what to install.
PKGS="build-essential pkg-config libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libhiredis-dev \
libpq-dev libssl-dev libgnutls28-dev libcriterion-dev python3-pytest python3-requests python3-yaml python3-jwt python3-cryptography redis-server postgresql wrk nginx-light \
clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || exit 1
    # Debian starts services from postinst; we start our own on free ports, so ask it not to.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq $missing; rc=$?
    rm -f /usr/sbin/policy-rc.d
    exit $rc
fi
echo "deps: missing packages:$missing"
echo "deps: install them with: sudo apt-get install -y$missing"
[ "$1" = check ] && exit 1
exit 1
