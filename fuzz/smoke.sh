#!/bin/sh
# smoke.sh SRCDIR SECONDS TARGET... - make fuzz-smoke: run each libFuzzer
# target fuzz/fuzz_TARGET for SECONDS from the seeds fuzz/mkseeds writes
# (with the real vocabularies and templates of $HEARTH_TESTDATA when
# set), the regression inputs of SRCDIR/tests/corpus/TARGET and what
# earlier runs found (fuzz-work/TARGET-corpus), with TARGET.dict.
# Prints one line per target and a summary; fails if any target crashed,
# leaked, timed out or broke an invariant: its input is then in
# fuzz-work/TARGET-crashes/ (copy it to tests/corpus/TARGET/ once fixed).
# Run from the build directory.
set -u

srcdir=$1
secs=$2
shift 2

rm -rf fuzz-seeds
./fuzz/mkseeds fuzz-seeds || exit 1
mkdir -p fuzz-work

passed=0
failed=0
for t in "$@"; do
	corpus=fuzz-work/$t-corpus
	crashes=fuzz-work/$t-crashes
	log=fuzz-work/$t.log
	rm -rf "$crashes"
	mkdir -p "$corpus" "$crashes"
	# -timeout: one input taking this long is a finding (a hang);
	# -rss_limit_mb/-malloc_limit_mb: so is a runaway allocation.
	./fuzz/fuzz_"$t" -max_total_time="$secs" -timeout=20 \
	    -rss_limit_mb=3072 -malloc_limit_mb=1024 \
	    -dict="$srcdir/fuzz/$t.dict" -artifact_prefix="$crashes/" \
	    -print_final_stats=1 \
	    "$corpus" fuzz-seeds/"$t" "$srcdir/tests/corpus/$t" \
	    >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
	units=$(ls "$corpus" | wc -l)
	found=$(ls "$crashes" | wc -l)
	if [ "$rc" -eq 0 ] && [ "$found" -eq 0 ]; then
		passed=$((passed + 1))
		status=ok
	else
		failed=$((failed + 1))
		status="FAILED (exit $rc)"
	fi
	printf 'fuzz-smoke %-9s %s: %s executions in %s s, coverage %s, corpus %s\n' \
	    "$t" "$status" "${execs:-?}" "$secs" "${cov:-?}" "$units"
	if [ "$status" != ok ]; then
		grep -E 'ERROR|invariant|SUMMARY|Test unit written|^==' "$log" |
		    head -n 20
		echo "  log: fuzz-work/$t.log; inputs: $(ls "$crashes" |
		    sed "s|^|$crashes/|" | tr '\n' ' ')"
	fi
done
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
