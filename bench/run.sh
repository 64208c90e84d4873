#!/usr/bin/env bash
# `make bench`: backfill speed and memory on the generated --preset large
# corpus (cached under /tmp), against a raw-parse baseline of the same bytes
# and two floors: the same rows, prebuilt, through the same cache writer (on
# the path the import took: a fresh cache or WAL), and SQLite alone copying
# them (bench/sqlite_floor.py); the CPU seconds of each phase of the import
# (parse workers, writer, its end: index build or final checkpoint, the
# checkpointer), from the `hyp-phases` line HYP_BENCH_PHASES=1 prints; each
# provider into a cache that does not exist yet (a fresh host; the median of
# 3 runs, as the targets are stated) and codex once more into the claude
# cache (WAL); 200 new sessions into the large cache; claude 2.5 times as
# large into a new cache (peak RSS); plus the re-run on the
# unchanged corpus, the CPU of a capture sweep over it (bench/child_cpu.py),
# and 1 MiB appended to a 50 MB session, continued and read whole
# (bench/append.py); and the export of the large claude cache to a fake
# central. Prints figures and target lines;
# never fails on a missed target (timing is a measurement, not a test).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
# The shared generator when it is beside the checkout (the reference's
# figures were measured on its corpus), else the project's own
# (examples/hyp-gen-history: same shapes, flags and manifest).
generate=()
for dir in "$here/.." "$here/../.."; do
  if [ -f "$dir/shared/bench/gen_corpus.py" ]; then generate=(python3 "$dir/shared/bench/gen_corpus.py"); break; fi
done
if [ ${#generate[@]} -eq 0 ]; then
  cargo build --release --example hyp-gen-history >/dev/null 2>&1 || cargo build --release --example hyp-gen-history
  generate=("$here/target/release/examples/hyp-gen-history")
  echo "bench: no ../shared/bench/gen_corpus.py; generating with examples/hyp-gen-history"
fi

preset=${BENCH_PRESET:-large}
corpus=${BENCH_CORPUS:-/tmp/hyp-bench-corpus/$preset}
if [ ! -f "$corpus/manifest.json" ]; then
  echo "bench: generating the $preset corpus in $corpus (once; cached)"
  "${generate[@]}" --preset "$preset" --out "$corpus" >/dev/null
fi

if [ ! -x /usr/bin/time ]; then
  echo "bench: installing GNU time for peak RSS"
  (apt-get install -y time >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1)) || true
fi

examples=(--example parse_baseline --example write_floor --example hyp-fake-central)
cargo build --release --bins "${examples[@]}" >/dev/null 2>&1 || cargo build --release --bins "${examples[@]}"
hyp="$here/target/release/hyp"
baseline="$here/target/release/examples/parse_baseline"
write_floor="$here/target/release/examples/write_floor"

work=$(mktemp -d /tmp/hyp-bench-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" HYP_HOME="$work/home/.hyp" HYP_NO_GIT=1
# The claude history is a hard-linked copy (no bytes copied), so that 200
# new sessions can be added to it later without touching the cached corpus.
mkdir -p "$HOME" "$work/history"
cp -al "$corpus/claude" "$work/history/claude"
export CLAUDE_CONFIG_DIR="$work/history/claude" CODEX_HOME="$corpus/codex"

manifest() { python3 -c "import json,sys; print(json.load(open('$corpus/manifest.json'))['providers']['$1']['$2'])"; }

# measure <label> <cmd...>: sets wall (s) and rss (KB) from GNU time.
measure() {
  shift
  local out="$work/time.txt"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%e %M %U %S" -o "$out" "$@" >"$work/stdout.json" 2>"$work/stderr.txt"
    read -r wall rss user sys <"$out"
    cpu=$(python3 -c "print(round($user+$sys,2))")
  else
    local start end
    start=$(date +%s.%N); "$@" >"$work/stdout.json" 2>"$work/stderr.txt"; end=$(date +%s.%N)
    wall=$(python3 -c "print(round($end-$start,3))"); rss=0; cpu=0
  fi
}

# phases <label>: the `hyp-phases` line of the last measured run, as one
# printed line (CPU seconds per phase) and sets `path` (fresh or wal).
phases() {
  local line
  line=$(grep -o 'hyp-phases {.*}' "$work/stderr.txt" | tail -n 1 | cut -c12-)
  [ -n "$line" ] || { path=wal; echo "  (no hyp-phases line)"; return; }
  read -r path phase_text < <(python3 -c "
import json,sys
p=json.loads(sys.argv[1])
print(p['path'], 'parse %.2f  write %.2f  %s %.2f  checkpointer %.2f  (CPU s, %d parse workers)' % (
    p['parse_cpu_s'], p['write_cpu_s'], 'index build+move' if p['path']=='fresh' else 'final checkpoint',
    p['finish_cpu_s'], p['checkpoint_cpu_s'], p['workers']))" "$line")
  printf '  %-26s %s\n' "$1 phases" "$phase_text"
}

verdict() { python3 -c "print('ok' if $1 <= $2 else 'MISSED')"; }

# export_to_central: `hyp sync --yes` of the cache as it is (the large
# claude import) to a fake central on 127.0.0.1 that stores every chunk
# before answering and parses its lines after (a real central checks on its
# own machine, not on these 2 cores): rows/s, MB/s of request bodies, wall,
# CPU and peak RSS of the exporting process, and any line it refused.
export_to_central() {
  local central_bin="$here/target/release/examples/hyp-fake-central" url central_pid cpu
  "$central_bin" --url-file "$work/central.url" --token bench-token --data-dir "$work/central" \
    --check-after-answering >"$work/central.log" 2>&1 &
  central_pid=$!
  for _ in $(seq 200); do [ -s "$work/central.url" ] && break; sleep 0.05; done
  url=$(cat "$work/central.url")
  "$hyp" join "$url" bench-token --no-daemon >/dev/null 2>&1
  /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$hyp" sync --yes --json >"$work/stdout.json" 2>"$work/stderr.txt"
  read -r wall rss user sys <"$work/time.txt"
  cpu=$(python3 -c "print(round($user+$sys,2))")
  read -r sent bytes < <(python3 -c "import json; s=json.load(open('$work/stdout.json'))['sinks'][0]; print(s['rows_sent'], s['bytes_sent'])")
  printf '%-28s %10s %10.0f %9.1f %9.2f %7.1f MB\n' "claude export to central" "$sent" \
    "$(python3 -c "print($sent/max($wall,0.001))")" "$(python3 -c "print($bytes/1048576/max($wall,0.001))")" "$wall" \
    "$(python3 -c "print($rss/1024)")"
  summary+=("claude export: $sent rows, $(python3 -c "print(round($bytes/1048576))") MiB of NDJSON in ${wall} s (target <= 5 s) $(verdict "$wall" 5), ${cpu} s CPU in hyp; peak RSS $(python3 -c "print(round($rss/1024,1))") MB (target <= 32 MiB) $(verdict "$rss" 32768)")
  local violations
  violations=$(curl -fsS "$url/_admin/ingest" | python3 -c "import json,sys; print(len(json.load(sys.stdin)['violations']))")
  [ "$violations" = 0 ] || echo "bench: the fake central found $violations protocol violations" >&2
  kill -TERM "$central_pid" 2>/dev/null; wait "$central_pid" 2>/dev/null || true
  "$hyp" leave >/dev/null 2>&1 || true
}

printf '%-28s %10s %10s %9s %9s %10s\n' "run" "rows" "rows/s" "MB/s" "wall s" "peak RSS"
declare -A targets=([claude]=3.0 [codex]=1.8)
summary=()
export HYP_BENCH_PHASES=1
# backfill_run <label> <provider> [runs]: a measured import, its line and
# phases. With runs > 1 (the targets' "median of 3"), each run imports into a
# cache that does not exist yet, and the line is the median run's (by wall),
# with the largest peak RSS of all runs and every run's wall beside it.
backfill_run() {
  local label=$1 provider=$2 runs=${3:-1} run
  : >"$work/runs.txt"
  for ((run = 0; run < runs; run++)); do
    [ "$runs" -gt 1 ] && rm -rf "$HYP_HOME/hypaware/cache"
    measure "$provider" "$hyp" backfill "$provider" --json
    cp "$work/stdout.json" "$work/stdout.$run.json"
    cp "$work/stderr.txt" "$work/stderr.$run.txt"
    echo "$run $wall $rss $cpu" >>"$work/runs.txt"
  done
  if [ "$runs" -gt 1 ]; then
    read -r run wall rss cpu walls < <(python3 -c "
import sys
runs = [line.split() for line in open(sys.argv[1])]
median = sorted(runs, key=lambda run: float(run[1]))[len(runs) // 2]
print(median[0], median[1], max(int(run[2]) for run in runs), median[3], ','.join(run[1] for run in runs))" "$work/runs.txt")
    cp "$work/stdout.$run.json" "$work/stdout.json"
    cp "$work/stderr.$run.txt" "$work/stderr.txt"
  fi
  rows=$(python3 -c "import json; d=json.load(open('$work/stdout.json')); print(d['providers'][0]['rows_written'])")
  printf '%-28s %10s %10.0f %9.1f %9.2f %7.1f MB  %5.2f s CPU\n' "$label" "$rows" \
    "$(python3 -c "print($rows/max($wall,0.001))")" "$(python3 -c "print($mb/max($wall,0.001))")" "$wall" \
    "$(python3 -c "print($rss/1024)")" "$cpu"
  [ "$runs" -le 1 ] || printf '  %-26s %s\n' "$provider runs" "the median of $runs runs (wall s: $walls); peak RSS: the largest"
  phases "$provider"
}
for provider in claude codex; do
  bytes=$(manifest "$provider" bytes)
  expected=$(manifest "$provider" expected_rows)
  mb=$(python3 -c "print($bytes/1048576)")
  read -r _ _ _ _ base_wall < <("$baseline" "$corpus/$provider")
  printf '%-28s %10s %10s %9.1f %9.2f %10s\n' "$provider raw parse baseline" "-" "-" \
    "$(python3 -c "print($mb/max($base_wall,0.001))")" "$base_wall" "-"
  if [ "$provider" = codex ]; then
    # A fresh host with only codex history: its own new cache.
    HYP_HOME="$work/codex-home" backfill_run "codex backfill (new cache)" codex 3
    fresh_wall=$wall fresh_rss=$rss
    HYP_HOME="$work/codex-home" "$write_floor" "$work/codex-home/hypaware/cache/cache.db" codex "$work" fresh \
      >"$work/floor.txt"
    read -r floor_rows floor_wall <"$work/floor.txt"
    printf '%-28s %10s %10.0f %9s %9.2f %10s\n' "codex write floor (new)" "$floor_rows" \
      "$(python3 -c "print($floor_rows/max($floor_wall,0.001))")" "-" "$floor_wall" "-"
    summary+=("codex large, new cache: ${fresh_wall} s, median of 3 (target <= ${targets[codex]} s) $(verdict "$fresh_wall" "${targets[codex]}"); writing the prebuilt rows alone: ${floor_wall} s; peak RSS $(python3 -c "print(round($fresh_rss/1024,1))") MB (target <= 100 MB) $(verdict "$fresh_rss" 102400)")
    rm -rf "$work/codex-home"
    backfill_run "codex backfill (into claude)" codex
  else
    backfill_run "$provider backfill (new cache)" "$provider" 3
  fi
  [ "$rows" = "$expected" ] || echo "bench: $provider wrote $rows rows, manifest expects $expected" >&2
  # The same rows, already built in memory, through the same cache writer
  # on the same path (fresh or WAL): what the storage alone costs.
  read -r floor_rows floor_wall < <("$write_floor" "$HYP_HOME/hypaware/cache/cache.db" "$provider" "$work" "$path")
  printf '%-28s %10s %10.0f %9s %9.2f %10s\n' "$provider write floor ($path)" "$floor_rows" \
    "$(python3 -c "print($floor_rows/max($floor_wall,0.001))")" "-" "$floor_wall" "-"
  # SQLite alone copying those rows (no hyp code at all): the storage bound.
  read -r sqlite_rows sqlite_wall < <(python3 "$here/bench/sqlite_floor.py" "$HYP_HOME/hypaware/cache/cache.db" "$provider" "$work")
  printf '%-28s %10s %10.0f %9s %9.2f %10s\n' "$provider SQLite floor" "$sqlite_rows" \
    "$(python3 -c "print($sqlite_rows/max($sqlite_wall,0.001))")" "-" "$sqlite_wall" "-"
  if [ "$path" = fresh ]; then
    summary+=("$provider large ($path): ${wall} s, median of 3, ${cpu} s CPU (target <= ${targets[$provider]} s) $(verdict "$wall" "${targets[$provider]}"); writing the prebuilt rows alone: ${floor_wall} s, SQLite alone (WAL): ${sqlite_wall} s")
  else
    # The second provider of a host (backfill-on-join's codex child) adds to
    # the cache the first one built: the WAL path, whose writer alone takes
    # about as long as the new cache's target; the target is the new cache's.
    summary+=("$provider large into the claude cache ($path): ${wall} s, ${cpu} s CPU (no target; the ${targets[$provider]} s target is the new cache's, above); writing the prebuilt rows alone: ${floor_wall} s, SQLite alone (WAL): ${sqlite_wall} s")
  fi
  summary+=("$provider peak RSS: $(python3 -c "print(round($rss/1024,1))") MB (target <= 100 MB) $(verdict "$rss" 102400)")
  if [ "$provider" = claude ]; then export_to_central; fi
done
measure rerun "$hyp" backfill claude codex --json
printf '%-28s %10s %10s %9s %9.2f %7.1f MB\n' "re-run (unchanged corpus)" \
  "$(python3 -c "import json; d=json.load(open('$work/stdout.json')); print(sum(p['rows_written'] for p in d['providers']))")" \
  "-" "-" "$wall" "$(python3 -c "print($rss/1024)")"
summary+=("re-run: ${wall} s (target <= 0.1 s) $(verdict "$wall" 0.1)")

# 200 new sessions added to the large claude history: imported into the
# existing cache (the WAL path), the rest skipped as unchanged.
new_corpus=/tmp/hyp-bench-corpus/new200
if [ ! -f "$new_corpus/manifest.json" ]; then
  echo "bench: generating 200 new sessions in $new_corpus (once; cached)"
  "${generate[@]}" --sessions 200 --lines 200 --providers claude --seed 4242 --out "$new_corpus" >/dev/null
fi
cp -al "$new_corpus/claude/projects/." "$work/history/claude/projects/"
new_expected=$(python3 -c "import json; print(json.load(open('$new_corpus/manifest.json'))['providers']['claude']['expected_rows'])")
mb=$(python3 -c "import json; print(json.load(open('$new_corpus/manifest.json'))['providers']['claude']['bytes']/1048576)")
backfill_run "200 new sessions (WAL)" claude
[ "$rows" = "$new_expected" ] || echo "bench: 200 new sessions wrote $rows rows, their manifest expects $new_expected" >&2
summary+=("200 new sessions into the large cache: ${wall} s, ${cpu} s CPU (target <= 1.0 s) $(verdict "$wall" 1.0)")

# A first import 2.5 times the large one (5,000 claude sessions, about a
# million rows) into a cache of its own: the peak RSS target holds whatever
# the corpus size.
big_corpus=/tmp/hyp-bench-corpus/claude5000
if [ ! -f "$big_corpus/manifest.json" ]; then
  echo "bench: generating 5,000 claude sessions in $big_corpus (once; cached)"
  "${generate[@]}" --sessions 5000 --lines 200 --providers claude --out "$big_corpus" >/dev/null
fi
big_expected=$(python3 -c "import json; print(json.load(open('$big_corpus/manifest.json'))['providers']['claude']['expected_rows'])")
mb=$(python3 -c "import json; print(json.load(open('$big_corpus/manifest.json'))['providers']['claude']['bytes']/1048576)")
CLAUDE_CONFIG_DIR="$big_corpus/claude" HYP_HOME="$work/big-home" backfill_run "claude x2.5 (new cache)" claude
[ "$rows" = "$big_expected" ] || echo "bench: the 5,000 sessions wrote $rows rows, their manifest expects $big_expected" >&2
summary+=("claude x2.5 ($rows rows) into a new cache: ${wall} s, peak RSS $(python3 -c "print(round($rss/1024,1))") MB (target <= 100 MB whatever the corpus size) $(verdict "$rss" 102400)")
rm -rf "$work/big-home"
unset HYP_BENCH_PHASES
echo "cache size: $(du -h "$HYP_HOME/hypaware/cache/cache.db" | cut -f1)"

# A capture sweep over the unchanged large corpus, as the daemon runs it:
# CPU of the whole process (metadata and the ledger only).
read -r sweep_cpu sweep_wall < <(python3 "$here/bench/child_cpu.py" 7 "$work/stdout.json" "$hyp" backfill claude --json)
printf '%-28s %10s %10s %9s %9.3f %10s\n' "capture sweep (unchanged)" "0" "-" "-" \
  "$(python3 -c "print($sweep_wall/1000)")" "-"
summary+=("capture sweep, unchanged large claude corpus: ${sweep_cpu} ms CPU (target <= 50 ms) $(verdict "$sweep_cpu" 50)")

# 1 MiB appended to a 50 MB session: continued from the last import, and,
# for comparison, read whole (HYP_BACKFILL_NO_RESUME=1) into a second cache.
append_corpus=/tmp/hyp-bench-corpus/append
if [ ! -f "$append_corpus/manifest.json" ]; then
  echo "bench: generating one 50 MB session in $append_corpus (once; cached)"
  "${generate[@]}" --sessions 1 --lines 45000 --providers claude --out "$append_corpus" >/dev/null
fi
session=$(find "$append_corpus/claude" -name '*.jsonl' | head -n 1)
transcript="$work/append/claude/projects/p/s.jsonl"
mkdir -p "$(dirname "$transcript")"
read -r prefix_bytes tail_bytes < <(python3 "$here/bench/append.py" "$session" "$transcript" "$work/append/tail" 1)
for home in continued whole; do
  HYP_HOME="$work/append/$home" CLAUDE_CONFIG_DIR="$work/append/claude" "$hyp" backfill claude --json >/dev/null
done
cat "$work/append/tail" >>"$transcript"
append_figures() {
  python3 -c "import json; p=json.load(open('$work/stdout.json'))['providers'][0]; print(p['rows_written'], p['bytes_read'])"
}
read -r cont_cpu cont_wall < <(HYP_HOME="$work/append/continued" CLAUDE_CONFIG_DIR="$work/append/claude" \
  python3 "$here/bench/child_cpu.py" 1 "$work/stdout.json" "$hyp" backfill claude --json)
read -r cont_rows cont_read < <(append_figures)
read -r whole_cpu whole_wall < <(HYP_HOME="$work/append/whole" CLAUDE_CONFIG_DIR="$work/append/claude" HYP_BACKFILL_NO_RESUME=1 \
  python3 "$here/bench/child_cpu.py" 1 "$work/stdout.json" "$hyp" backfill claude --json)
read -r whole_rows whole_read < <(append_figures)
printf '%-28s %10s %10s %9s %9.3f %10s\n' "1 MiB append, continued" "$cont_rows" "-" "-" \
  "$(python3 -c "print($cont_wall/1000)")" "-"
printf '%-28s %10s %10s %9s %9.3f %10s\n' "1 MiB append, read whole" "$whole_rows" "-" "-" \
  "$(python3 -c "print($whole_wall/1000)")" "-"
summary+=("1 MiB ($tail_bytes B) appended to a $prefix_bytes B session: ${cont_wall} ms wall, ${cont_cpu} ms CPU, $cont_read B read (target <= 100 ms) $(verdict "$cont_wall" 100); read whole: ${whole_wall} ms, $whole_read B")
echo
for line in "${summary[@]}"; do echo "$line"; done

# The daemon side, against this home and its large cache.
bash "$here/bench/daemon.sh"
