#!/usr/bin/env bash
# Install test (run by packaging/test-packaging.sh): installs the .deb with dpkg into a clean
# Debian root made by debootstrap (minbase + adduser) and, chrooted there without systemd, runs
# the maintainer scripts for real:
#   1. install with the public address preseeded in debconf: the traffix user, the 0700 data dir,
#      `traffix init`, the admin password in a 0600 file (not in the terminal log); doctor, the
#      server from the installed config as `traffix`, /healthz, admin commands as root and as
#      `traffix`, an API login with the password from the file;
#   2. upgrade to a newer version over a database of the previous schema: config, key, JWT secret
#      and the edited conffile kept, the database copied before it migrates at the next start;
#   3. remove keeps the data; purge deletes it, the users and the debconf answer;
#   4. install with no address at all: initialised with pairing off, and it says how to set it.
# Needs root and debootstrap with a reachable Debian mirror; skipped with a message otherwise.
#   packaging/deb/test-install.sh DEB
set -euo pipefail
cd "$(dirname "$0")/../.."
deb=$(realpath "$1")
skip() { echo "==> install: SKIPPED $*"; }
[ "$(id -u)" = 0 ] || { skip "dpkg into a chroot needs root"; exit 0; }
if ! command -v debootstrap >/dev/null; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1; }; } \
    || { skip "debootstrap cannot be installed"; exit 0; }
fi
fail() { echo "install test: $*" >&2; exit 1; }
has() { grep -qF -- "$2" <<<"$1" || fail "expected '$2' in:
$1"; }
lacks() { if grep -qF -- "$2" <<<"$1"; then fail "did not expect '$2' in:
$1"; fi; }

# The host's own suite and mirror (the deb is linked against this host's libc).
suite=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
suite=${suite:-bookworm}
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d)
root="$work/root"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if mountpoint -q "$root/proc"; then umount -l "$root/proc" || true; fi
  # Never delete through a mount that is still there.
  if ! mountpoint -q "$root/proc"; then rm -rf "$work"; fi
}
trap cleanup EXIT

echo "==> install: debootstrap --variant=minbase $suite ($mirror)"
t0=$SECONDS
if ! debootstrap --variant=minbase --include=adduser "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  skip "debootstrap of $suite from $mirror failed (log above)"
  exit 0
fi
echo "    $((SECONDS - t0)) s"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/traffix.deb"
{ read -r web; read -r socks; read -r http; read -r metrics; } < <(python3 tests/free-ports.py 4)
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# The installed config listens on the default ports; the test serves on free loopback ones.
ports=(TRAFFIX_SERVER__WEB_LISTEN="127.0.0.1:$web" TRAFFIX_SERVER__SOCKS_LISTEN="127.0.0.1:$socks"
  TRAFFIX_SERVER__HTTP_LISTEN="127.0.0.1:$http" TRAFFIX_SERVER__METRICS_LISTEN="127.0.0.1:$metrics")
as_traffix() { in_root runuser -u traffix -- /usr/bin/env "${ports[@]}" "$@"; }
dpkg_in_root() { in_root DEBIAN_FRONTEND=noninteractive dpkg "$@" 2>&1; }
serve() {
  if curl -fsS "http://127.0.0.1:$metrics/healthz" >/dev/null 2>&1; then fail "a server is still answering"; fi
  # chroot, env and setpriv all exec: $! is the server itself, so kill and wait reach it.
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${ports[@]}" \
    setpriv --reuid=traffix --regid=traffix --init-groups -- traffix serve >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$metrics/healthz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  fail "the installed server never answered /healthz"
}
stop() { kill "$pid"; wait "$pid" || true; pid=""; }
stat_of() { in_root stat -c '%U:%G %a' "$1"; } # names as the root's own passwd has them

echo "==> install: dpkg -i with the public address preseeded in debconf"
echo "traffix traffix/public_address string 127.0.0.1:$web" | in_root debconf-set-selections
out=$(dpkg_in_root -i /tmp/traffix.deb) || { echo "$out" >&2; fail "dpkg -i failed"; }
printf '    %s\n' "${out//$'\n'/$'\n'    }"
has "$out" "initialised for public address 127.0.0.1:$web"
has "$out" "the password is in /var/lib/traffix/admin-password"
in_root getent passwd traffix | grep -q ':/var/lib/traffix:/usr/sbin/nologin$' || fail "no traffix system user"
in_root getent passwd traffix-node >/dev/null || fail "no traffix-node system user"
[ "$(stat_of /var/lib/traffix)" = "traffix:traffix 700" ] || fail "/var/lib/traffix is $(stat_of /var/lib/traffix)"
[ "$(stat_of /var/lib/traffix-node)" = "traffix-node:traffix-node 700" ] || fail "/var/lib/traffix-node is $(stat_of /var/lib/traffix-node)"
[ "$(stat_of /var/lib/traffix/admin-password)" = "traffix:traffix 600" ] || fail "admin-password is $(stat_of /var/lib/traffix/admin-password)"
password=$(cat "$root/var/lib/traffix/admin-password")
[ -n "$password" ] || fail "the admin password file is empty"
lacks "$out" "$password"
grep -qx "public_address = \"127.0.0.1:$web\"" "$root/var/lib/traffix/traffix.toml" || fail "the config lacks the preseeded address"

echo "==> install: doctor, serve as traffix, admin commands as root and traffix, API login"
rc=0; doctor=$(as_traffix traffix doctor 2>&1) || rc=$?
# 2 = warnings only (no GeoIP database, a loopback public address).
[ "$rc" = 0 ] || [ "$rc" = 2 ] || { echo "$doctor" >&2; fail "doctor exited $rc"; }
serve
in_root traffix user add pkgroot --json | grep -q '"proxy_password"' || fail "root cannot reach the server"
as_traffix traffix user credit pkgroot 2.50 --reason "install test" >/dev/null || fail "traffix cannot reach the server"
in_root traffix user show pkgroot --json | grep -q '"balance_micros": *2500000' || fail "credit did not land"
token=$(curl -fsSk "https://127.0.0.1:$web/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | sed -n 's/.*"access_token": *"\([^"]*\)".*/\1/p')
[ -n "$token" ] || fail "the admin password from the file does not sign in"
stop

echo "==> install: upgrade over a database of the previous schema"
keep=(/var/lib/traffix/traffix.toml /var/lib/traffix/tls/key.pem /var/lib/traffix/tls/cert.pem /var/lib/traffix/jwt.secret)
before=$(cd "$root" && sha256sum "${keep[@]#/}")
echo "# edited by the operator" >>"$root/etc/default/traffix"
fixture=tests/fixtures/store/v3.redb
install -o "$(stat -c %u "$root/var/lib/traffix")" -g "$(stat -c %g "$root/var/lib/traffix")" -m 0600 \
  "$fixture" "$root/var/lib/traffix/traffix.redb" # numeric ids: the same in and out of the root
version=$(dpkg-deb -f "$deb" Version)
newer="$work/traffix-newer.deb"
# The same files under a higher version: what an upgrade does to the system is the scripts' work.
dpkg-deb -R "$deb" "$work/newer"
sed -i "s/^Version: .*/Version: $version.1/" "$work/newer/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/newer" "$newer" >/dev/null
cp "$newer" "$root/tmp/traffix-newer.deb"
out=$(dpkg_in_root -i /tmp/traffix-newer.deb) || { echo "$out" >&2; fail "the upgrade failed"; }
lacks "$out" "initialised"
# shellcheck disable=SC2016 # dpkg-query's own ${Version}
[ "$(in_root dpkg-query -W -f '${Version}' traffix)" = "$version.1" ] || fail "the newer version is not installed"
after=$(cd "$root" && sha256sum "${keep[@]#/}")
[ "$before" = "$after" ] || fail "the upgrade changed the config, key or secret"
grep -q '^# edited by the operator$' "$root/etc/default/traffix" || fail "the upgrade replaced the edited /etc/default/traffix"
serve
backup=$(find "$root/var/lib/traffix/backups" -name 'pre-migration-3-*.redb' 2>/dev/null | head -n 1)
[ -n "$backup" ] || { cat "$work/serve.log" >&2; fail "no pre-migration copy of the database"; }
cmp -s "$backup" "$fixture" || fail "the pre-migration copy differs from the database it copied"
in_root traffix ledger verify >/dev/null || fail "ledger verify failed after the migration"
# The fixture's figures (tests/fixtures/store/README.md).
in_root traffix user show alice --json | grep -q '"balance_micros": *33999169' || fail "alice's balance changed"
stop

echo "==> install: remove keeps the data, purge deletes it"
dpkg_in_root -r traffix >/dev/null || fail "dpkg -r failed"
[ ! -e "$root/usr/bin/traffix" ] || fail "remove left the binary"
if [ ! -e "$root/var/lib/traffix/traffix.toml" ] || [ ! -e "$root/var/lib/traffix/tls/key.pem" ]; then
  fail "remove deleted the data"
fi
dpkg_in_root --purge traffix >/dev/null || fail "dpkg --purge failed"
if [ -e "$root/var/lib/traffix" ] || [ -e "$root/var/lib/traffix-node" ]; then fail "purge left the data"; fi
if in_root getent passwd traffix >/dev/null; then fail "purge left the traffix user"; fi

echo "==> install: no address at all: pairing off, and how to set it"
out=$(dpkg_in_root -i /tmp/traffix.deb) || { echo "$out" >&2; fail "dpkg -i without an address failed"; }
has "$out" "initialised with pairing off"
has "$out" "public_address"
grep -qx 'public_address = ""' "$root/var/lib/traffix/traffix.toml" || fail "expected an empty public_address (the debconf answer should be purged)"
serve
grep -q 'pairing is off' "$work/serve.log" || fail "the server does not say pairing is off"
pair=$(in_root traffix pair admin 2>&1) && fail "pairing worked without a public address"
has "$pair" "pairing is off"
stop
dpkg_in_root --purge traffix >/dev/null || fail "the second purge failed"
echo "==> install: passed in $((SECONDS - t0)) s"
