#!/usr/bin/env bash
# Runs libFuzzer targets one at a time, each from a scratch copy of its committed seed corpus
# (tests/fuzz/corpus/NAME for fuzz_NAME): what it finds stays out of the source tree.
#
#   run.sh smoke SECONDS CORPUS_DIR TARGET...   each for SECONDS (make fuzz-smoke, CI)
#   run.sh long RUNS CORPUS_DIR TARGET...       each for RUNS executions, niced (make fuzz-long)
#
# Fails on the first target that crashes, leaks, times out or exits otherwise than cleanly;
# the input that did it is left in ./fuzz-artifacts/NAME/ and the fuzzer's log is printed.
# Prints one line per target: executions, seconds, peak RSS.
set -u
mode=$1 amount=$2 corpora=$3
shift 3
case "$mode" in
smoke) limit=(-max_total_time="$amount") nice=() ;;
long) limit=(-runs="$amount") nice=(nice -n 10) ;;
*) echo "usage: $0 smoke SECONDS|long RUNS CORPUS_DIR TARGET..." >&2; exit 2 ;;
esac

status=0
for target in "$@"; do
	name=$(basename "$target")
	name=${name#fuzz_}
	seeds=$corpora/$name
	if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
		echo "fuzz: $target has no seed corpus in $seeds" >&2
		status=1
		continue
	fi
	work=$(mktemp -d)
	cp -r "$seeds"/. "$work/"
	artifacts=fuzz-artifacts/$name
	mkdir -p "$artifacts"
	log=$(mktemp)
	start=$(date +%s)
	"${nice[@]}" "$target" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$artifacts/" "$work" >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
	if [ $rc != 0 ]; then
		echo "fuzz: $name FAILED (exit $rc) after ${runs:-?} executions, ${secs}s; input in $artifacts/" >&2
		grep -E -A40 '^==[0-9]+==ERROR|runtime error|ALARM|deadly signal|out-of-memory' "$log" |
			head -80 >&2
		status=1
	else
		printf 'fuzz: %-14s %10s executions in %5ss, peak RSS %s MB, no crash\n' \
			"$name" "$runs" "$secs" "$rss"
		rmdir "$artifacts" 2>/dev/null
	fi
	rm -rf "$work" "$log"
done
rmdir fuzz-artifacts 2>/dev/null
exit $status
