#!/usr/bin/env bash
# The libFuzzer harnesses: build, fuzz, replay. See fuzz/README.md.
#
#   fuzz/run.sh build [DIR]              clang build of the fuzz targets (default build/fuzz)
#   fuzz/run.sh fuzz [SECONDS]           build build/fuzz, fuzz each target SECONDS
#                                        (default $FUZZ_SECONDS or 60), print a summary
#   fuzz/run.sh replay DIR TARGET        run every file of fuzz/corpus/TARGET once
#   fuzz/run.sh smoke DIR TARGET SECONDS fuzz TARGET briefly from its corpus
#
# Environment: FUZZ_CC (default clang); FUZZ_TARGETS="a b" fuzzes only those;
# FUZZ_MERGE=1 merges what `fuzz` found into fuzz/corpus/ (minimised), else
# new inputs stay in DIR/new/TARGET; FUZZ_JOBS compile jobs.
# Exit 77 when clang or libFuzzer's runtime is missing (ctest: skipped).
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
CC_FUZZ="${FUZZ_CC:-clang}"
FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

die() { echo "fuzz: $*" >&2; exit 1; }
absdir() { mkdir -p "$1" && (cd "$1" && pwd); }

# Exits 77 unless clang links a libFuzzer binary with ASan and UBSan.
check_toolchain() {
  if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
    echo "fuzz: SKIP: $CC_FUZZ not found (Debian: apt-get install clang libclang-rt-14-dev," \
         "or sh tools/install-deps.sh test)" >&2
    exit 77
  fi
  local tmp
  tmp="$(mktemp -d)"
  printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
    >"$tmp/t.c"
  if ! "$CC_FUZZ" -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >"$tmp/log" 2>&1; then
    echo "fuzz: SKIP: $CC_FUZZ cannot link a libFuzzer binary (Debian: apt-get install" \
         "libclang-rt-14-dev):" >&2
    sed 's/^/  /' "$tmp/log" >&2
    rm -rf "$tmp"
    exit 77
  fi
  rm -rf "$tmp"
}

build() {
  local dir="$1"
  check_toolchain
  local jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}"
  cmake -S "$SRC" -B "$dir" -DCMAKE_C_COMPILER="$CC_FUZZ" -DCMAKE_BUILD_TYPE= \
        -DCMAKE_C_FLAGS="$FLAGS" -DSN_TESTS=OFF -DSN_SANITIZE=OFF -DSN_FUZZ=ON >/dev/null
  if ! cmake --build "$dir" --target fuzz_all -j "$jobs" >"$dir/build.log" 2>&1; then
    grep -E 'error|warning' "$dir/build.log" | head -n 20 >&2 || true
    tail -n 20 "$dir/build.log" >&2
    die "the clang build failed (log: $dir/build.log)"
  fi
  echo "fuzz: built $(targets "$dir" | tr '\n' ' ')in $dir"
}

# The targets of a build, and each one's libFuzzer arguments.
targets() { cut -f1 "$1/fuzz-targets.txt"; }
target_args() {
  local line
  line="$(awk -F '\t' -v t="$2" '$1 == t { print $2 }' "$1/fuzz-targets.txt")"
  echo "$line"
}

need_binary() {
  local dir="$1" t="$2"
  if [ ! -x "$dir/bin/$t" ]; then
    check_toolchain # skip where the build was skipped for want of clang
    die "$dir/bin/$t is missing (did fuzz.build / fuzz/run.sh build fail?)"
  fi
}

replay() {
  local dir="$1" t="$2"
  need_binary "$dir" "$t"
  local corpus="$SRC/fuzz/corpus/$t"
  [ -d "$corpus" ] || die "no corpus folder $corpus"
  local files=()
  while IFS= read -r f; do files+=("$f"); done < <(find "$corpus" -type f | sort)
  [ "${#files[@]}" -gt 0 ] || die "$corpus is empty"
  local out="$dir/replay/$t"
  mkdir -p "$out"
  # shellcheck disable=SC2046
  (cd "$out" && "$dir/bin/$t" $(target_args "$dir" "$t") -error_exitcode=1 -artifact_prefix="$out/" \
      "${files[@]}") \
    >"$out/log" 2>&1 || { tail -n 60 "$out/log"; die "$t: replay failed (log: $out/log)"; }
  local ran
  ran="$(grep -c '^Executed ' "$out/log" || true)"
  echo "$t: replayed $ran of ${#files[@]} corpus files, no failure"
  [ "$ran" -eq "${#files[@]}" ] || die "$t: only $ran of ${#files[@]} files ran"
}

# Runs libFuzzer on TARGET for SECONDS from its corpus; new inputs go to a
# scratch folder, findings (crash-*, leak-*, timeout-*, oom-*) to
# DIR/findings/TARGET. Prints one summary line; fails on a finding.
fuzz_one() {
  local dir="$1" t="$2" secs="$3" tag="$4"
  need_binary "$dir" "$t"
  local corpus="$SRC/fuzz/corpus/$t"
  local new="$dir/new/$t" findings="$dir/findings/$t" log="$dir/logs/$t.$tag.log"
  mkdir -p "$new" "$findings" "$dir/logs"
  local before after
  before="$(ls "$findings")"
  local rc=0
  # shellcheck disable=SC2046
  (cd "$findings" && "$dir/bin/$t" $(target_args "$dir" "$t") -max_total_time="$secs" \
      -print_final_stats=1 -error_exitcode=1 -timeout_exitcode=1 \
      -artifact_prefix="$findings/" "$new" "$corpus") >"$log" 2>&1 || rc=$?
  after="$(ls "$findings")"
  local execs eps cov ft found
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)" || true
  eps="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)" || true
  cov="$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -n1 | cut -d' ' -f2)"
  ft="$( (grep -o 'ft: [0-9]*' "$log" || true) | tail -n1 | cut -d' ' -f2)"
  found="$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')" || true
  printf '%-18s %5ss  execs %-9s exec/s %-6s cov %-5s ft %-6s corpus+%-4s findings %s\n' \
    "$t" "$secs" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" \
    "$(find "$new" -type f | wc -l)" "$(echo -n "$found" | grep -c . || true)"
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    echo "    exit $rc; log $log"
    (grep -E '^==[0-9]+==(ERROR|WARNING)|^SUMMARY|invariant failed|runtime error|Test unit written' \
      "$log" || true) | head -n 10 | sed 's/^/    /'
    echo "$found" | sed '/^$/d' | sed "s|^|    finding: $findings/|"
    return 1
  fi
}

cmd="${1:-}"
case "$cmd" in
  build)
    build "$(absdir "${2:-$SRC/build/fuzz}")"
    ;;
  replay)
    [ $# -eq 3 ] || die "usage: $0 replay DIR TARGET"
    replay "$(absdir "$2")" "$3"
    ;;
  smoke)
    [ $# -eq 4 ] || die "usage: $0 smoke DIR TARGET SECONDS"
    # A scratch folder per run: a smoke starts from the committed corpus only.
    rm -rf "$2/new/$3"
    fuzz_one "$(absdir "$2")" "$3" "$4" smoke
    ;;
  fuzz)
    dir="$SRC/build/fuzz"
    secs="${2:-${FUZZ_SECONDS:-60}}"
    build "$dir"
    summary="$dir/summary.txt"
    list="${FUZZ_TARGETS:-$(targets "$dir" | tr '\n' ' ')}"
    echo "fuzz: $secs s per target: $list"
    status=0
    {
      echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?')"
    } >>"$summary"
    for t in $list; do
      line="$(fuzz_one "$dir" "$t" "$secs" fuzz)" || status=1
      echo "$line"
      echo "$line" >>"$summary"
      if [ "${FUZZ_MERGE:-0}" = 1 ] && [ -d "$dir/new/$t" ]; then
        # shellcheck disable=SC2046
        "$dir/bin/$t" $(target_args "$dir" "$t") -merge=1 "$SRC/fuzz/corpus/$t" "$dir/new/$t" \
          >"$dir/logs/$t.merge.log" 2>&1 || die "$t: merge failed (log $dir/logs/$t.merge.log)"
        echo "  merged into fuzz/corpus/$t: $(find "$SRC/fuzz/corpus/$t" -type f | wc -l) files"
      fi
    done
    echo "fuzz: summary appended to $summary; findings (if any) in $dir/findings/"
    exit $status
    ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
