#!/bin/sh
# Runs every Criterion test binary given, then prints one total line. Fails if any binary fails.
pass=0; fail=0; rc=0
# test_store_pg needs a PostgreSQL server: one throwaway server (tests/pg.sh) for the whole run, its
# URL in KAILASH_TEST_DATABASE_URL (each test makes a database of its own), stopped at the end.
case " $* " in
*test_store_pg*)
    here=$(cd "$(dirname "$0")/.." && pwd)
    pgdir=$(mktemp -d /tmp/kailash-unit-pg-XXXXXX)
    trap 'sh "$here/pg.sh" clean "$pgdir"' EXIT
    trap 'exit 1' INT TERM
    if KAILASH_TEST_DATABASE_URL=$(sh "$here/pg.sh" up "$pgdir"); then
        export KAILASH_TEST_DATABASE_URL KAILASH_TEST_PG_SH="$here/pg.sh"
    else
        echo "unit: could not start a PostgreSQL server for test_store_pg (see above)"
    fi
    ;;
esac
for t in "$@"; do
    out=$("$t" --jobs 2 2>&1); r=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep 'Synthesis: Tested' | tail -n 1)
    p=$(printf '%s' "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
    f=$(printf '%s' "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
    c=$(printf '%s' "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0} + ${c:-0}))
    [ $r -ne 0 ] && rc=1 && [ -z "$line" ] && fail=$((fail + 1))
done
echo "unit: $pass passed, $fail failed"
exit $rc
