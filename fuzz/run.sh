#!/usr/bin/env bash
# Builds and fuzzes one target with AFL++ (cargo afl) until it has run
# EXECUTIONS inputs (default 10 million), then prints its figures.
#   fuzz/run.sh TARGET [EXECUTIONS]
# Targets: ami_codec detector console config lists dump.
# Needs `cargo install cargo-afl` (it builds AFL++ from the crate's bundled
# source with cc and make). Findings go to fuzz/out/TARGET/default/crashes.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [EXECUTIONS]}
execs=${2:-10000000}
[ -d "corpus/$target" ] || { echo "no target $target (corpus/$target missing)" >&2; exit 2; }

nice -n 10 cargo afl build --release --bin "$target"
mkdir -p out
# A shared machine: no CPU pinning, no governor check; crashes are seen
# even when core dumps go to a handler (we never touch core_pattern).
export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1 AFL_FAST_CAL=1
# Persistent mode: one process runs this many inputs before AFL++ forks anew.
export AFL_FUZZER_LOOPCOUNT=100000
# A fresh run each time, so the figures are this run's; the last one's
# findings stay in out/TARGET.old.
if [ -d "out/$target" ]; then rm -rf "out/$target.old"; mv "out/$target" "out/$target.old"; fi
start=$(date +%s)
# Inputs of at most 4 KiB (-G): past that an input only repeats what a
# shorter one reaches, and runs slower (the caps have small-cap variants).
# The detector's caps are a few entries: 1 KiB (about 100 events) fills them.
max_len=4096
[ "$target" = detector ] && max_len=1024
nice -n 10 cargo afl fuzz -i "corpus/$target" -o "out/$target" -E "$execs" -t 1000 -G "$max_len" \
    -- "target/release/$target" > "out/$target.log" 2>&1 || {
    tail -20 "out/$target.log" >&2
    exit 1
}
stats="out/$target/default/fuzzer_stats"
get() { awk -v k="$1" '$1 == k { print $3 }' "$stats"; }
echo "$target: $(get execs_done) executions in $(( $(date +%s) - start )) s" \
    "($(get execs_per_sec)/s), corpus $(get corpus_count)," \
    "crashes $(get saved_crashes), hangs $(get saved_hangs)"
