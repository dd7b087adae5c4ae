#!/usr/bin/env bash
# Container test (run by packaging/test-packaging.sh): builds the image of Containerfile from
# BINARY on a base made here from this host's glibc, dash, bash, sed, chmod and env (no image is
# pulled), checks its config (user, volume, ports, health check), then runs the exported root
# filesystem with chroot as the image's user: first start (init, admin-password 0600), serve,
# and the health check. Needs podman and root; skipped otherwise.
#   packaging/container/test-container.sh BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$1"
skip() { echo "==> container: SKIPPED $*"; }
command -v podman >/dev/null || { skip "podman is not installed"; exit 0; }
[ "$(id -u)" = 0 ] || { skip "chroot needs root"; exit 0; }

work=$(mktemp -d)
pid=""
unset RUN_EXEC # set only for the server below (run() execs with it)
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  podman rm -f traffix-pkgtest >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# Private vfs storage: nothing of the host's images is touched.
cat >"$work/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$work/graph"
runroot = "$work/run"
CONF
export CONTAINERS_STORAGE_CONF="$work/storage.conf"

echo "==> container: base image from this host's libraries"
base="$work/base"
mkdir -p "$base/bin" "$base/usr/bin" "$base/tmp"
for tool in dash bash sed chmod env; do cp "$(command -v "$tool")" "$base/bin/$tool"; done
mv "$base/bin/dash" "$base/bin/sh"
for f in "$bin" "$base"/bin/*; do
  ldd "$f" | grep -o '/[^ ]*' | while read -r lib; do cp --parents -L "$lib" "$base/"; done
done
printf 'FROM scratch\nCOPY . /\n' >"$work/Containerfile.base"
podman build -q -t localhost/traffix-testbase -f "$work/Containerfile.base" "$base" >/dev/null

echo "==> container: podman build (Containerfile, BASE=localhost/traffix-testbase)"
BASE=localhost/traffix-testbase TAG=localhost/traffix:pkgtest packaging/container/build.sh "$bin" -- -q --pull=never >/dev/null
cfg=$(podman image inspect localhost/traffix:pkgtest --format '{{.Config.User}}|{{json .Config.Volumes}}|{{json .Config.ExposedPorts}}|{{json .Config.Healthcheck.Test}}')
echo "    $cfg"
for want in '10001:10001|' '"/var/lib/traffix"' '"8443/tcp"' '"1080/tcp"' '"3128/tcp"' '"/usr/bin/traffix-entrypoint","healthcheck"'; do
  case "$cfg" in *"$want"*) ;; *) echo "the image config lacks $want" >&2; exit 1 ;; esac
done
podman create --name traffix-pkgtest localhost/traffix:pkgtest >/dev/null
rootfs="$work/rootfs"; mkdir -p "$rootfs"
podman export traffix-pkgtest | tar -x -C "$rootfs"
[ "$(stat -c '%u:%g %a' "$rootfs/var/lib/traffix")" = "10001:10001 700" ]

echo "==> container: first start, serve and health check (chroot as 10001)"
{ read -r web; read -r socks; read -r http; read -r metrics; } < <(python3 tests/free-ports.py 4)
run() {
  ${RUN_EXEC:+exec} chroot --userspec=10001:10001 "$rootfs" /bin/env -i PATH=/usr/bin:/bin TRAFFIX_DATA_DIR=/var/lib/traffix \
    TRAFFIX_PUBLIC_ADDRESS="127.0.0.1:$web" TRAFFIX_SERVER__WEB_LISTEN="127.0.0.1:$web" \
    TRAFFIX_SERVER__SOCKS_LISTEN="127.0.0.1:$socks" TRAFFIX_SERVER__HTTP_LISTEN="127.0.0.1:$http" \
    TRAFFIX_SERVER__METRICS_LISTEN="127.0.0.1:$metrics" TRAFFIX_HEALTH_ADDR="127.0.0.1:$metrics" "$@"
}
run /usr/bin/traffix --version | grep -q '^traffix '
if run /usr/bin/traffix-entrypoint healthcheck 2>/dev/null; then echo "health check passed with no server" >&2; exit 1; fi
# exec all the way down (subshell, chroot, env, the entrypoint, traffix), so $! is the server
# itself: killing a subshell that waited for chroot left the server running after the test.
(RUN_EXEC=1 run /usr/bin/traffix-entrypoint serve) >"$work/serve.log" 2>&1 &
pid=$!
ok=""
for _ in $(seq 1 100); do
  if run /usr/bin/traffix-entrypoint healthcheck 2>/dev/null; then ok=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
[ -n "$ok" ] || { cat "$work/serve.log" >&2; echo "the container's server never became healthy" >&2; exit 1; }
grep -q 'admin password in /var/lib/traffix/admin-password' "$work/serve.log"
[ "$(stat -c '%u %a' "$rootfs/var/lib/traffix/admin-password")" = "10001 600" ]
[ -s "$rootfs/var/lib/traffix/admin-password" ]
kill "$pid"; wait "$pid" || true; pid=""
echo "==> container: passed"
