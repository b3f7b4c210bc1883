#!/bin/sh
# Runs every fuzz target of the repository for FUZZTIME each (default 30s), one at a time:
# `go test -fuzz` takes a single target per invocation. FUZZ selects targets by a regexp of their
# names; FUZZFLAGS is passed on (e.g. -parallel=1). A crash fails that target and the run goes
# on with the others (it exits 1 at the end); the input that made it is saved under the
# package's testdata/fuzz/<target>/, where `make test` replays it as a seed from then on.
# Prints each target's executions and the failures at the end.
set -eu
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
cd "$(dirname "$0")/.."
summary=$(mktemp)
log=$(mktemp)
rc=$(mktemp)
trap 'rm -f "$summary" "$log" "$rc"' EXIT
for f in $(grep -rl --include='*_test.go' '^func Fuzz' cmd internal pkg 2>/dev/null | sort); do
	dir=./$(dirname "$f")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
		echo "$target" | grep -Eq -- "$FUZZ" || continue
		echo "== $dir $target ($FUZZTIME)"
		# Each new input is minimised for up to a minute by default, which leaves a slow target
		# (a .deb written and extracted per input) no time to run: 100 executions at most.
		# shellcheck disable=SC2086
		{
			status=0
			$GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 100x ${FUZZFLAGS:-} "$dir" 2>&1 || status=$?
			echo "$status" >"$rc"
		} | tee "$log"
		execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
		result=ok
		if [ "$(cat "$rc")" != 0 ]; then
			result="FAIL: the failing input is under $dir/testdata/fuzz/$target/"
			# Go before 1.27 may end a run that found nothing with a bare "context deadline
			# exceeded" when -fuzztime ends under load (golang/go#75804): no input failed.
			if ! grep -q 'Failing input written to' "$log" && tail -n 4 "$log" | grep -q '^    context deadline exceeded$'; then
				result="ok (go's end-of-fuzztime race, golang/go#75804: no input failed)"
			fi
		fi
		printf '%-28s %-32s %12s  %s\n' "$target" "$dir" "${execs:-?}" "$result" >>"$summary"
	done
done
echo
printf '%-28s %-32s %12s  %s\n' TARGET PACKAGE EXECUTIONS RESULT
cat "$summary"
echo "$(wc -l <"$summary") targets, $(grep -c FAIL "$summary") failed"
! grep -q FAIL "$summary"
