#!/usr/bin/env bash
# Writes deploy/.env for deploy/docker-compose.yaml: every empty `NAME=` line of
# deploy/.env.example gets a fresh random value (32 random bytes as hex: URL-safe, long enough
# for every secret), comments and other lines are copied. The file is created with mode 600 and
# never overwritten: delete it first to start over (the MySQL users keep the passwords of the
# first start; see deploy/.env.example).
#   scripts/compose-env.sh [OUTPUT]      (default deploy/.env)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-deploy/.env}
example=deploy/.env.example

[ -e "$out" ] && { echo "compose-env: $out exists; not overwriting it" >&2; exit 1; }
command -v openssl >/dev/null || { echo "compose-env: openssl is needed" >&2; exit 1; }

umask 077
tmp=$(mktemp "$out.XXXXXX")
key=$(mktemp)
trap 'rm -f "$tmp" "$key"' EXIT
# The access-token pair: an Ed25519 key's 32-byte seed and public key, base64 (what `mall keys`
# prints). The raw keys are the last 32 bytes of their DER encodings.
openssl genpkey -algorithm ed25519 -outform DER -out "$key"
signing_key=$(tail -c 32 "$key" | base64 -w0)
verify_key=$(openssl pkey -inform DER -in "$key" -pubout -outform DER | tail -c 32 | base64 -w0)
while IFS= read -r line || [ -n "$line" ]; do
  if [ "$line" = "MALL_ACCESS_SIGNING_KEY=" ]; then
    printf 'MALL_ACCESS_SIGNING_KEY=%s\n' "$signing_key"
  elif [ "$line" = "MALL_ACCESS_VERIFY_KEY=" ]; then
    printf 'MALL_ACCESS_VERIFY_KEY=%s\n' "$verify_key"
  elif [[ "$line" =~ ^([A-Z][A-Z0-9_]*)=$ ]]; then
    printf '%s=%s\n' "${BASH_REMATCH[1]}" "$(openssl rand -hex 32)"
  else
    printf '%s\n' "$line"
  fi
done <"$example" >"$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out (mode 600); keep it out of version control and backups you share"
