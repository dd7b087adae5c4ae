#!/usr/bin/env bash
# Builds android/core and its tests with kotlinc and runs them with JUnit 4 — no Gradle, no
# Android SDK (STYLE.md §4.4). Installs what it needs first, idempotently:
#   - Debian: default-jdk-headless, libokhttp-java, libokio-java, junit4 (apt only when missing);
#   - the Kotlin compiler from the npm package kotlin-compiler (npm maps only kotlinc-js as a
#     command, so the tarball is unpacked with `npm pack` and its bin/kotlinc is called), cached
#     under $TRAFFIX_KOTLIN_CACHE (default /tmp/traffix-kotlin), so fresh clones reuse it.
# Build output goes to android/.build (ignored). The tests read the shared golden vectors of
# tests/vectors/ through the system property traffix.vectors.
#
# Exit status: non-zero when anything fails to install or compile, or when a test fails.
# With --bench it runs the node benchmark instead of the tests (not in CI).
set -euo pipefail

# Pinned: keep equal to `kotlin` in android/gradle/libs.versions.toml.
KOTLIN_VERSION=2.4.20
APT_PACKAGES=(default-jdk-headless libokhttp-java libokio-java junit4)

android_dir=$(cd "$(dirname "$0")/.." && pwd)
repo_dir=$(cd "$android_dir/.." && pwd)
build_dir="$android_dir/.build/core"
cache_dir="${TRAFFIX_KOTLIN_CACHE:-/tmp/traffix-kotlin}"
kotlin_home="$cache_dir/kotlin-compiler-$KOTLIN_VERSION"
start=$(date +%s)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages ---------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Kotlin compiler ---------------------------------------------------------------------------
if [ ! -x "$kotlin_home/bin/kotlinc" ] || [ ! -f "$kotlin_home/lib/kotlin-stdlib.jar" ]; then
  echo "==> npm pack kotlin-compiler@$KOTLIN_VERSION into $cache_dir"
  command -v npm >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  mkdir -p "$cache_dir"
  work=$(mktemp -d "$cache_dir/unpack.XXXXXX")
  (cd "$work" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null)
  tar -xzf "$work/kotlin-compiler-$KOTLIN_VERSION.tgz" -C "$work"
  chmod +x "$work/package/bin/"*
  rm -rf "$kotlin_home"
  mv "$work/package" "$kotlin_home"   # atomic on one file system: a half-unpacked tree is never used
  rm -rf "$work"
fi
kotlinc="$kotlin_home/bin/kotlinc"
stdlib="$kotlin_home/lib/kotlin-stdlib.jar"

# --- Class path (Debian's jars) ----------------------------------------------------------------
jar() {
  local found
  for name in "$@"; do
    found="/usr/share/java/$name.jar"
    if [ -f "$found" ]; then echo "$found"; return; fi
  done
  echo "test-core: none of $* found in /usr/share/java" >&2
  exit 1
}
main_cp="$(jar okhttp):$(jar okio)"
test_cp="$main_cp:$(jar junit4 junit):$(jar hamcrest-core hamcrest-all hamcrest)"

# --- Compile (skipped when nothing changed) ----------------------------------------------------
main_src="$android_dir/core/src/main/kotlin"
test_src="$android_dir/core/src/test/kotlin"
# The app's pure-Kotlin helpers (no android.* import) and their JVM unit tests run here too.
app_pure_src="$android_dir/app/src/main/kotlin/net/traffix/node/Formats.kt"
app_test_src="$android_dir/app/src/test/kotlin"
stamp_file="$build_dir/sources.sha256"
stamp=$( (echo "$KOTLIN_VERSION $main_cp $test_cp"; sha256sum <"$0"; find "$main_src" "$test_src" "$app_pure_src" "$app_test_src" -name '*.kt' -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp" ] || [ ! -d "$build_dir/test" ]; then
  rm -rf "$build_dir"
  mkdir -p "$build_dir/main" "$build_dir/test"
  echo "==> kotlinc core ($(find "$main_src" -name '*.kt' | wc -l) files)"
  # core compiles against the Java 8 API (-Xjdk-release=1.8): Android 10 (minSdk 29) lacks most
  # of Java 9+ (List.of, String.repeat…), so the same sources must not reach for it. java.time
  # is in both. Tests run on the JDK only and may use Java 17 (Ed25519).
  "$kotlinc" -jvm-target 1.8 -Xjdk-release=1.8 -cp "$main_cp" -d "$build_dir/main" "$main_src"
  # -Xfriend-paths: tests see core's internal declarations, as in Gradle's test source set.
  echo "==> kotlinc core tests ($(find "$test_src" -name '*.kt' | wc -l) files)"
  "$kotlinc" -jvm-target 17 -Xfriend-paths="$build_dir/main" -cp "$build_dir/main:$test_cp" -d "$build_dir/test" "$test_src"
  echo "==> kotlinc app's JVM-testable helpers and their tests"
  "$kotlinc" -jvm-target 1.8 -Xjdk-release=1.8 -cp "$build_dir/main:$main_cp" -d "$build_dir/main" "$app_pure_src"
  "$kotlinc" -jvm-target 17 -cp "$build_dir/main:$test_cp" -d "$build_dir/test" "$app_test_src"
  echo "$stamp" >"$stamp_file"
else
  echo "==> core unchanged since the last build; reusing its classes"
fi

# --- Or the benchmark (`test-core.sh --bench`; docs/benchmarks.md) -----------------------------
# The Kotlin node against the Rust node and direct TCP through a release `traffix serve`.
# TRAFFIX_BENCH_SCALE (default 1) scales every workload.
if [ "${1:-}" = "--bench" ]; then
  echo "==> cargo build --release --bin traffix"
  (cd "$repo_dir" && cargo build --locked --release --quiet --bin traffix)
  exec java -Xmx2g -cp "$build_dir/test:$build_dir/main:$test_cp:$stdlib" net.traffix.core.e2e.NodeBenchKt \
    "${TRAFFIX_BIN:-$repo_dir/target/release/traffix}" "${TRAFFIX_BENCH_SCALE:-1}"
fi

# --- The traffix binary for the end-to-end tests ----------------------------------------------
# ServerE2ETest runs the Kotlin node against the real `traffix serve` (curl and python-socks as
# clients). TRAFFIX_BIN names a prebuilt binary; otherwise the debug build is brought up to date
# (a no-op after tests/run-all.sh's `cargo test`, which built it).
traffix_bin="${TRAFFIX_BIN:-}"
if [ -z "$traffix_bin" ]; then
  echo "==> cargo build --bin traffix (for the end-to-end tests)"
  (cd "$repo_dir" && cargo build --locked --quiet --bin traffix)
  traffix_bin="$repo_dir/target/debug/traffix"
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "test-core: $tool is needed by the end-to-end tests (tests/run-all.sh installs it)" >&2; exit 1; }
done
python3 -c 'import python_socks' 2>/dev/null || { echo "test-core: python-socks is needed by the end-to-end tests (tests/run-all.sh installs it)" >&2; exit 1; }

# --- Run every test class ----------------------------------------------------------------------
classes=$(cd "$build_dir/test" && find . -name '*Test.class' ! -name '*$*' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
if [ -z "$classes" ]; then
  echo "test-core: no test classes found" >&2
  exit 1
fi
echo "==> JUnit: $(echo "$classes" | wc -l) test classes"
log="$build_dir/junit.log"
set +e
# shellcheck disable=SC2086 # one argument per class name
java -Dtraffix.vectors="$repo_dir/tests/vectors" -Dtraffix.strings="$android_dir/app/src/main/res/values/strings.xml" -Dtraffix.bin="$traffix_bin" -cp "$build_dir/test:$build_dir/main:$test_cp:$stdlib" \
  org.junit.runner.JUnitCore $classes 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# JUnitCore ends with "OK (N tests)" or "Tests run: N,  Failures: M"; print the plain summary too.
if ok=$(grep -oE '^OK \([0-9]+ tests?\)' "$log" | grep -oE '[0-9]+'); then
  passed=$ok failed=0
else
  run=$(grep -oE 'Tests run: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  failed=$(grep -oE 'Failures: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  passed=$((run - failed))
fi
echo "test-core: $passed passed, $failed failed ($(($(date +%s) - start)) s)"
exit "$status"
