#!/bin/sh
# Container entrypoint. Modes:
#   serve [FLAGS]   first start on an empty volume: traffix init with TRAFFIX_PUBLIC_ADDRESS
#                   (HOST:PORT nodes dial; required), admin password into
#                   $TRAFFIX_DATA_DIR/admin-password (0600); then exec traffix serve
#   node [FLAGS]    a node: pairs with TRAFFIX_PAIR_LINK on first start, state in
#                   /var/lib/traffix-node/node.json (mount a volume there)
#   healthcheck     GET /healthz on the metrics listener (127.0.0.1:9464 unless
#                   TRAFFIX_HEALTH_ADDR=HOST:PORT), exit 0 on HTTP 200
#   anything else   runs traffix with those arguments (admin commands: `user add alice`)
set -eu

DATA="${TRAFFIX_DATA_DIR:-/var/lib/traffix}"
export TRAFFIX_DATA_DIR="$DATA"

json_field() { # NAME JSON
  printf '%s\n' "$2" | sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p"
}

case "${1:-serve}" in
serve)
  [ $# -gt 0 ] && shift
  if [ ! -e "$DATA/traffix.toml" ]; then
    if [ -z "${TRAFFIX_PUBLIC_ADDRESS:-}" ]; then
      echo "traffix: $DATA is empty; set TRAFFIX_PUBLIC_ADDRESS=HOST:PORT (what nodes dial, e.g. proxy.example.com:8443) for the first start" >&2
      exit 64
    fi
    umask 077
    out=$(traffix init --json --public-address "$TRAFFIX_PUBLIC_ADDRESS")
    json_field admin_password "$out" >"$DATA/admin-password"
    chmod 0600 "$DATA/admin-password"
    echo "traffix: initialised for $TRAFFIX_PUBLIC_ADDRESS; admin password in $DATA/admin-password; TLS pin $(json_field pin "$out")"
  fi
  exec traffix serve "$@"
  ;;
node)
  shift
  state=/var/lib/traffix-node/node.json
  if [ ! -e "$state" ]; then
    if [ -z "${TRAFFIX_PAIR_LINK:-}" ]; then
      echo "traffix: $state does not exist; set TRAFFIX_PAIR_LINK='traffix://pair?...' (from \`traffix pair USER\`) for the first start" >&2
      exit 64
    fi
    exec traffix node --pair "$TRAFFIX_PAIR_LINK" --state "$state" "$@"
  fi
  exec traffix node --state "$state" "$@"
  ;;
healthcheck)
  exec bash -c '
    addr="${TRAFFIX_HEALTH_ADDR:-127.0.0.1:9464}"
    exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || exit 1
    printf "GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n" "$addr" >&3
    IFS= read -r status <&3 || exit 1
    case "$status" in "HTTP/1."?" 200"*) exit 0 ;; *) exit 1 ;; esac'
  ;;
*)
  exec traffix "$@"
  ;;
esac
