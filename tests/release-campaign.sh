#!/usr/bin/env bash
# The release-size fault campaign (docs/testing.md): every campaign of `strata-tests` at
# STRATA_FAULT_SCALE (default 16), in release mode. Each campaign appends its own summary
# table to a report file (STRATA_FAULT_REPORT); this script then writes that file, verbatim,
# with the totals it sums from it, between the figure markers of docs/testing.md. No figure
# there is typed by hand.
#
#   tests/release-campaign.sh            # about 20 minutes on 2 cores
#   STRATA_FAULT_SCALE=64 tests/release-campaign.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scale=${STRATA_FAULT_SCALE:-16}
report=target/fault-report.txt
log=target/release-campaign.log
mkdir -p target
: > "$report"
start=$(date -u +%s)
status=0
STRATA_FAULT_SCALE=$scale STRATA_FAULT_REPORT=$PWD/$report \
    cargo test --release --no-fail-fast -p strata-tests 2>&1 | tee "$log" || status=$?
end=$(date -u +%s)

# Totals of the figures every table reports.
sum() { awk -v row="$1" 'index($0, "| " row) == 1 { total += $NF } END { print total + 0 }' "$report"; }
states=$(sum "states explored")
kills=$(sum "processes killed")
points=$(sum "points tried")
injected=$(sum "faults injected")
detected=$(sum "faults detected")
lint=$(sum "syscall-order checks")
wrong=$(sum "wrong answers (must be 0)")
losses=$(sum "losses (must be 0)")
reopens=$(sum "reopen failures (must be 0)")
violations=$(sum "lint violations (must be 0)")

figures=$(mktemp)
{
    echo "Run of $(date -u -d "@$start" '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)," \
        "STRATA_FAULT_SCALE=$scale, $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s on" \
        "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))." \
        "Other knobs set: $(env | grep '^STRATA_' | grep -v '^STRATA_FAULT_SCALE=\|^STRATA_FAULT_REPORT=' | sort | tr '\n' ' ' | sed 's/ $//' | grep . || echo none)."
    echo
    echo "| total | |"
    echo "|---|---:|"
    echo "| crash and fault points tried | $points |"
    echo "| states explored (crash states recovered and checked) | $states |"
    echo "| faults injected (flips, lost and misdirected writes, I/O errors, bad input) | $injected |"
    echo "| faults detected | $detected |"
    echo "| processes killed (SIGKILL) | $kills |"
    echo "| syscall-order checks | $lint |"
    echo "| lint violations | $violations |"
    echo "| wrong answers | $wrong |"
    echo "| reopen failures | $reopens |"
    echo "| losses | $losses |"
    echo
    echo "Each campaign's own table, as it printed it:"
    echo
    echo '```text'
    cat "$report"
    echo '```'
} > "$figures"

awk -v figures="$figures" '
    /<!-- figures:begin -->/ { print; while ((getline line < figures) > 0) print line; skip = 1; next }
    /<!-- figures:end -->/ { skip = 0 }
    !skip { print }
' docs/testing.md > docs/testing.md.new
mv docs/testing.md.new docs/testing.md
echo "docs/testing.md updated: $states states, $kills kills, $losses losses"
if [ "$status" -ne 0 ]; then
    echo "some campaign FAILED (exit $status): see $log" >&2
fi
exit "$status"
