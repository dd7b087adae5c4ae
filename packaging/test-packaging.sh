#!/usr/bin/env bash
# Packaging test (run by tests/run-all.sh after the other steps): checks the Prometheus alert
# rules with promtool, packages the debug binary `cargo test` built (the `deb` profile), checks its files, permissions
# and maintainer scripts, runs lintian, extracts it and runs the installed binary (--version,
# init, doctor, serve, /healthz) as the current user on free loopback ports, verifies the systemd
# units, installs, upgrades, removes and purges it with dpkg in a debootstrapped root
# (packaging/deb/test-install.sh), then builds the container image from the same binary and runs
# it from the exported image's root filesystem (chroot, when root).
# A step whose tool cannot be installed here is skipped with a message saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "==> packaging: SKIPPED $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
  || { as_root apt-get update -qq >/dev/null 2>&1 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start=$SECONDS

# The Prometheus alert rules (docs/operations.md, "Alerts"): their syntax, then their unit tests.
# promtool comes from Debian's prometheus package, extracted rather than installed: installing it
# would also enable and start a Prometheus server on the machine that runs the tests.
promtool_dir=$(mktemp -d)
promtool=$(command -v promtool || true)
if [ -z "$promtool" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  get_prometheus() { (cd "$promtool_dir" && apt-get download prometheus >/dev/null 2>&1); }
  if get_prometheus || { as_root apt-get update -qq >/dev/null 2>&1 && get_prometheus; }; then
    dpkg-deb -x "$promtool_dir"/prometheus_*.deb "$promtool_dir/root" && promtool="$promtool_dir/root/usr/bin/promtool"
  fi
fi
if [ -n "$promtool" ] && "$promtool" --version >/dev/null 2>&1; then
  echo "==> packaging: promtool check rules, promtool test rules"
  if ! { "$promtool" check rules packaging/prometheus/traffix-alerts.yml \
      && "$promtool" test rules packaging/prometheus/traffix-alerts.test.yml; }; then
    rm -rf "$promtool_dir"; exit 1
  fi
else
  skip "the alert rules check (promtool cannot be installed)"
fi
rm -rf "$promtool_dir"

if ! command -v dpkg-deb >/dev/null; then skip "the .deb test: dpkg-deb is missing (not a Debian system)"; exit 0; fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "==> installing cargo-deb"
  cargo install --locked --quiet cargo-deb || { skip "the .deb test: cargo-deb cannot be installed"; exit 0; }
fi
command -v lintian >/dev/null || apt_install lintian || true
command -v podman >/dev/null || apt_install podman || true

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# What this tests is the package (files, modes, maintainer scripts, units, install and upgrade),
# not the optimiser: it packages a debug binary instead of compiling the whole tree again in a
# profile of its own (8 minutes of CI). The dependencies are those tests/run-all.sh's `cargo test`
# built; only the traffix crate is compiled again, with the packaged build's `system-paths`
# feature. cargo deb takes a built binary from target/<profile>/ (the `deb` profile, Cargo.toml);
# the second `cargo build` puts the test binary back in target/debug (nothing to compile: cargo
# keeps both). Release packages: `cargo deb` (docs/operations.md).
echo "==> packaging: cargo deb --profile deb --no-build (a debug build with system-paths)"
cargo build --locked --quiet --features system-paths --bin traffix </dev/null
mkdir -p target/deb
# (rm first: a cargo-built target/deb/traffix is a hard link to its artifact, which cp would overwrite)
rm -f target/deb/traffix
cp target/debug/traffix target/deb/traffix
cargo build --locked --quiet --bin traffix </dev/null
deb=$(cargo deb --locked --profile deb --no-build --output target/deb-pkg/ </dev/null | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb did not name a .deb: $deb" >&2; exit 1; }
echo "    $deb ($((SECONDS - start)) s so far)"

echo "==> packaging: file list, permissions, control"
dpkg-deb -c "$deb" >"$work/files"
expect_file() { # MODE OWNER PATH
  grep -Eq "^$1 $2 +[0-9]+ [0-9-]+ [0-9:]+ \\.$3\$" "$work/files" || { echo "missing or wrong: $1 $2 $3" >&2; cat "$work/files" >&2; exit 1; }
}
expect_file -rwxr-xr-x "(root/root|0/0)" /usr/bin/traffix
expect_file -rw-r--r-- "(root/root|0/0)" /lib/systemd/system/traffix.service
expect_file -rw-r--r-- "(root/root|0/0)" /lib/systemd/system/traffix-node.service
expect_file -rw-r--r-- "(root/root|0/0)" /lib/systemd/system/traffix-geoip.service
expect_file -rw-r--r-- "(root/root|0/0)" /lib/systemd/system/traffix-geoip.timer
expect_file -rw-r--r-- "(root/root|0/0)" /etc/default/traffix
expect_file -rw-r--r-- "(root/root|0/0)" /usr/share/doc/traffix/copyright
expect_file -rw-r--r-- "(root/root|0/0)" /usr/share/doc/traffix/examples/traffix-alerts.yml
if grep -E '^[-d]r.{8} ' "$work/files" | grep -Ev '^(-rw-r--r--|-rwxr-xr-x|drwxr-xr-x) (root/root|0/0) ' ; then
  echo "files above have unexpected modes or owners" >&2; exit 1
fi
dpkg-deb -e "$deb" "$work/control"
for s in config postinst prerm postrm; do
  [ -x "$work/control/$s" ] || { echo "maintainer script $s missing or not executable" >&2; exit 1; }
  sh -n "$work/control/$s"
done
grep -q '^Template: traffix/public_address$' "$work/control/templates"
grep -qx /etc/default/traffix "$work/control/conffiles"
grep -q '^Depends:.*adduser' "$work/control/control"
grep -q '^Depends:.*debconf' "$work/control/control"
grep -q 'runuser -u traffix' "$work/control/postinst"
grep -q 'rm -rf /var/lib/traffix ' "$work/control/postrm"
if command -v shellcheck >/dev/null; then
  shellcheck packaging/deb/scripts/{config,postinst,prerm,postrm} packaging/deb/*.sh packaging/container/*.sh \
    packaging/test-packaging.sh
else
  skip "shellcheck (not installed)"
fi

if command -v lintian >/dev/null; then
  echo "==> packaging: lintian"
  lintian --fail-on error,warning --tag-display-limit 0 "$deb"
else
  skip "lintian (cannot be installed)"
fi

echo "==> packaging: run the extracted package as $(id -un)"
root="$work/root"
dpkg-deb -x "$deb" "$root"
bin="$root/usr/bin/traffix"
"$bin" --version | grep -q '^traffix '
"$bin" --help | grep -q 'default: /var/lib/traffix'
data="$work/data"
web=$(free_port); socks=$(free_port); http=$(free_port); metrics=$(free_port)
TRAFFIX_DATA_DIR="$data" "$bin" init --public-address "127.0.0.1:$web" --web-listen "127.0.0.1:$web" \
  --socks-listen "127.0.0.1:$socks" --http-listen "127.0.0.1:$http" --metrics-listen "127.0.0.1:$metrics" --json >"$work/init.json"
grep -q '"admin_password"' "$work/init.json"
rc=0; TRAFFIX_DATA_DIR="$data" "$bin" doctor >"$work/doctor.txt" || rc=$?
# 2 = warnings only (no GeoIP database, a loopback public address): fine for a test.
[ "$rc" = 0 ] || [ "$rc" = 2 ] || { cat "$work/doctor.txt" >&2; exit 1; }
TRAFFIX_DATA_DIR="$data" "$bin" serve >"$work/serve.log" 2>&1 &
server_pid=$!
ok=""
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$metrics/healthz" >/dev/null 2>&1; then ok=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ok" ] || { cat "$work/serve.log" >&2; echo "serve never answered /healthz" >&2; exit 1; }
curl -fsSk "https://127.0.0.1:$web/healthz" | grep -q '"ok"'
TRAFFIX_DATA_DIR="$data" "$bin" user add pkgtest --json | grep -q '"password"'
kill "$server_pid"; wait "$server_pid" || true; server_pid=""

if command -v systemd-analyze >/dev/null && systemd-analyze --version >/dev/null 2>&1; then
  echo "==> packaging: systemd-analyze verify"
  units="$work/units"; mkdir -p "$units"
  for u in traffix.service traffix-node.service traffix-geoip.service traffix-geoip.timer; do
    sed "s|/usr/bin/traffix|$bin|" "$root/lib/systemd/system/$u" >"$units/$u"
  done
  if ! out=$(systemd-analyze verify "$units"/*.service "$units"/*.timer 2>&1); then
    echo "$out" >&2; exit 1
  fi
  if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
else
  skip "systemd-analyze verify (systemd-analyze does not run here)"
fi

packaging/deb/test-install.sh "$deb"
packaging/container/test-container.sh "$bin"
echo "==> packaging: passed in $((SECONDS - start)) s"
