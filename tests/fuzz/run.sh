#!/bin/sh
# Runs each libFuzzer target for SECONDS seconds: tests/fuzz/run.sh SECONDS build-fuzz/fuzz/fuzz_x ...
# Seeds come from tests/fuzz/corpus/<target>/ (read only); what the fuzzer adds goes to
# build-fuzz/corpus/<target>/, a crash, leak or UB report to tests/fuzz/crashes/<target>/ with the log
# next to it. Prints one line per target and fails when any target found something.
set -u
secs=$1
shift
cd "$(dirname "$0")/../.."
failed=0
for bin in "$@"; do
    name=$(basename "$bin" | sed 's/^fuzz_//')
    seeds=tests/fuzz/corpus/$name
    work=build-fuzz/corpus/$name
    crashes=tests/fuzz/crashes/$name
    mkdir -p "$work" "$crashes" "$seeds"
    log=build-fuzz/$name.log
    start=$(date +%s)
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$work" "$seeds" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz $name: ${took}s, ${runs:-?} runs, $cov, $(ls "$work" | wc -l) corpus files: nothing found"
        rmdir "$crashes" 2>/dev/null
    else
        failed=1
        cp "$log" "$crashes/"
        echo "fuzz $name: FOUND after ${took}s (exit $rc): $(grep -m1 -E 'ERROR|runtime error|SUMMARY' "$log")"
        echo "fuzz $name: log and input in $crashes/"
    fi
done
exit $failed
