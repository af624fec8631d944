#!/bin/sh
# man-lint.sh - every manual page in man/ must pass `mandoc -T lint` with
# nothing above style level: -W warning makes mandoc exit 2 for a
# warning, 3 for an error, 4 for an unsupported feature (5 and 6: bad
# arguments, system error), 0 when there is nothing at warning level or
# above. Style messages are shown but do not fail the test.
# Skipped (exit 77) where mandoc is not installed.
set -u
if ! command -v mandoc >/dev/null 2>&1; then
	echo "SKIP: mandoc not installed"
	exit 77
fi
src=${srcdir:-.}/man
build=${HEARTH_BUILDDIR:-.}/man

# The pages of the source tree, and pages generated in the build tree.
pages=""
for f in "$src"/*.[1-9] "$build"/*.[1-9]; do
	[ -f "$f" ] || continue
	case " $pages " in
	*" $src/${f##*/} "*) continue ;;	# the same page, built in place
	esac
	pages="$pages $f"
done
if [ -z "$pages" ]; then
	echo "FAIL: no manual pages in $src"
	exit 1
fi

fail=0
n=0
for f in $pages; do
	n=$((n + 1))
	# -W after -T: -T lint alone means -W all
	out=$(mandoc -T lint -W warning "$f" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ]; then
		printf '%s\n' "$out"
		echo "FAIL: ${f##*/}: mandoc -T lint -W warning exited $rc"
		fail=1
		continue
	fi
	# style suggestions, for information
	mandoc -T lint -W style "$f" 2>&1 | sed 's/^/  note: /'
	echo "ok: ${f##*/}"
done
echo "$n pages checked"
exit "$fail"
