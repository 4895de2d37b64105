#!/bin/sh
# Runs every Criterion test binary given, then prints one total line. Fails if any binary fails.
pass=0; fail=0; rc=0
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
