#!/bin/sh
# run.sh: runs libFuzzer targets one after the other, each for SECONDS on
# a work corpus seeded from tests/fuzz/corpus/<target>, and prints one line
# per target: executions, new corpus entries, crashes (crash, leak, timeout
# and out-of-memory artifacts). Exits 1 if any target found anything.
#
#   run.sh [-s SECONDS] [-c FUZZDIR] [-w WORKDIR] target...
#
# Targets are run as tests/fuzz/<target> of the build directory; FUZZDIR is
# the source tests/fuzz (corpora and dictionaries); WORKDIR (default
# tests/fuzz/work) keeps each target's corpus, log and artifacts.
set -u

secs=15
dir=$(dirname "$0")
work=tests/fuzz/work
while getopts s:c:w: opt; do
	case $opt in
	s) secs=$OPTARG ;;
	c) dir=$OPTARG ;;
	w) work=$OPTARG ;;
	*) echo "usage: $0 [-s seconds] [-c fuzzdir] [-w workdir] target..." >&2
	   exit 2 ;;
	esac
done
shift $((OPTIND - 1))

# The dictionary of a target, if it has one.
dict_of() {
	case $1 in
	fuzz_env) echo "$dir/env.dict" ;;
	fuzz_agent_http | fuzz_http_intake) echo "$dir/http.dict" ;;
	fuzz_identity | fuzz_agent_path | fuzz_agent_multipart) ;;
	*) echo "$dir/json.dict" ;;
	esac
}

failed=0
printf '%-20s %12s %9s %8s %s\n' target execs exec/s crashes "(${secs} s each)"
for t in "$@"; do
	w=$work/$t
	mkdir -p "$w/corpus"
	rm -f "$w"/crash-* "$w"/leak-* "$w"/timeout-* "$w"/oom-*
	d=$(dict_of "$t")
	set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$w/"
	[ -n "$d" ] && [ -f "$d" ] && set -- "$@" -dict="$d"
	seeds=$dir/corpus/$t
	[ -d "$seeds" ] || seeds=
	"tests/fuzz/$t" "$@" "$w/corpus" $seeds >"$w/log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$w/log" | tail -n 1)
	found=$(ls "$w"/crash-* "$w"/leak-* "$w"/timeout-* "$w"/oom-* 2>/dev/null | wc -l)
	printf '%-20s %12s %9s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$found"
	if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
		failed=1
		echo "---- $t: exit $rc; last lines of $w/log:"
		tail -n 40 "$w/log"
	fi
done
exit $failed
