#!/bin/sh
# systemd-security.sh - the service's hardening, as systemd scores it:
# `systemd-analyze security --offline=yes` must give 1.5 or lower.
# Skipped (exit 77) where systemd-analyze does not exist.
set -eu
unit=${HEARTH_BUILDDIR:-.}/systemd/hearthd.service
max=1.5
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIP: systemd-analyze not installed"
	exit 77
fi
[ -f "$unit" ] || { echo "FAIL: $unit not built"; exit 1; }
out=$(systemd-analyze security --offline=yes "$unit" 2>&1) || true
score=$(printf '%s\n' "$out" |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
	printf '%s\n' "$out" | tail -5
	echo "FAIL: no exposure level in systemd-analyze's output"
	exit 1
fi
echo "hearthd.service exposure level $score (limit $max)"
awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' || {
	echo "FAIL: exposure $score > $max"
	exit 1
}
