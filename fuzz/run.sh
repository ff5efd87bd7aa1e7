#!/usr/bin/env bash
# Builds grid's fuzz targets and runs each of them (libFuzzer, AddressSanitizer).
#
#   fuzz/run.sh [--merge] [LIMIT] [TARGET...]
#
# FUZZ_SANITIZER picks the sanitizer: `address` (the default), or `leak` (LeakSanitizer
# only: it still reports leaks and enforces the allocation limit, and runs about three
# times faster, which suits long runs of safe Rust), or `none`.
# LIMIT is how long each target runs: `30s` (the default), `10m`, `2h`, or a number of
# executions (`10000000`). TARGET defaults to every target (frame_decoder, handshake,
# engine). Installs what it needs first: a nightly toolchain and cargo-fuzz.
#
# Each target reads its committed corpus (fuzz/corpus/TARGET) and hand-made seeds
# (fuzz/seeds/TARGET) and writes the inputs it finds to fuzz/target/corpus/TARGET, so a
# run leaves the checkout clean. With --merge, the committed corpus is then replaced by
# the minimized union of all three (libFuzzer's -merge=1). A crash, a leak, an input
# slower than 30 s or an allocation of more than 512 MiB (a process above 2 GiB) stops the
# run with a non-zero status; the input is in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")"

merge=0
if [ "${1:-}" = "--merge" ]; then
  merge=1
  shift
fi
limit="${1:-30s}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_decoder handshake engine)
fi

case "$limit" in
  *s) budget=(-max_total_time="${limit%s}") ;;
  *m) budget=(-max_total_time="$(( ${limit%m} * 60 ))") ;;
  *h) budget=(-max_total_time="$(( ${limit%h} * 3600 ))") ;;
  *[!0-9]* | "") echo "LIMIT: 30s, 10m, 2h or a number of executions, not $limit" >&2; exit 2 ;;
  *) budget=(-runs="$limit") ;;
esac

if ! rustup run nightly rustc --version > /dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal --no-self-update
fi
if ! cargo fuzz --version > /dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

sanitizer="${FUZZ_SANITIZER:-address}"
case "$sanitizer" in
  address | leak | none) ;;
  *) echo "FUZZ_SANITIZER: address, leak or none, not $sanitizer" >&2; exit 2 ;;
esac

# What stops a run: an input slower than 30 s, an allocation over 512 MiB, a process over 2 GiB.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=30)

# One build of every target (nightly, the sanitizer, coverage instrumentation, --cfg fuzzing).
cargo +nightly fuzz build -s "$sanitizer"

for t in "${targets[@]}"; do
  echo "== fuzz target $t ($limit, sanitizer $sanitizer)"
  mkdir -p "corpus/$t" "seeds/$t" "target/corpus/$t"
  cargo +nightly fuzz run -s "$sanitizer" "$t" "target/corpus/$t" "corpus/$t" "seeds/$t" -- \
    "${budget[@]}" "${limits[@]}" -print_final_stats=1
  if [ "$merge" = 1 ]; then
    merged="target/corpus/$t.merged"
    rm -rf "$merged" && mkdir -p "$merged"
    cargo +nightly fuzz run -s "$sanitizer" "$t" "$merged" "corpus/$t" "target/corpus/$t" "seeds/$t" -- \
      -merge=1 "${limits[@]}"
    rm -rf "corpus/$t" && mv "$merged" "corpus/$t"
    echo "== corpus/$t: $(ls "corpus/$t" | wc -l) inputs, $(du -sh "corpus/$t" | cut -f1)"
  fi
done
