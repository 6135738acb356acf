#!/usr/bin/env bash
# setup.sh — the secrets docker/compose.yaml needs, made once, kept out of git (docker/secrets/):
#
#   certs/ca.crt, ca.key          a private CA for the mesh broker
#   certs/server.crt, server.key  Mosquitto's certificate, for the names "mosquitto" and "localhost"
#   passwd                        Mosquitto's password file: users node-a and node-b
#   node-a.env, node-b.env        CALLSHIELD_MQTT_PASSWORD for each node (compose env_file)
#   mesh.key                      the cluster's signing key (64 hex digits)
#   node-a.toml, node-b.toml      docker/node-X.toml with the mesh key filled in
#
# Run:  docker/setup.sh            (again: keeps what exists; --force makes everything anew)
# Needs openssl, and mosquitto_passwd (Debian: mosquitto) or Docker to run it from eclipse-mosquitto:2.
# CALLSHIELD_SECRETS overrides the output directory (the tests use a temporary one).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${CALLSHIELD_SECRETS:-${HERE}/secrets}"
NODES=(node-a node-b)

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "${OUT}"
fi
mkdir -p "${OUT}/certs"
chmod 0755 "${OUT}" "${OUT}/certs"

if [[ ! -s "${OUT}/certs/server.crt" ]]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=callshield demo CA" \
        -keyout "${OUT}/certs/ca.key" -out "${OUT}/certs/ca.crt" 2>/dev/null
    openssl req -newkey rsa:3072 -nodes -subj "/CN=mosquitto" \
        -keyout "${OUT}/certs/server.key" -out "${OUT}/certs/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:mosquitto,DNS:localhost,IP:127.0.0.1\n' >"${OUT}/certs/server.ext"
    openssl x509 -req -in "${OUT}/certs/server.csr" -CA "${OUT}/certs/ca.crt" -CAkey "${OUT}/certs/ca.key" \
        -CAcreateserial -days 825 -extfile "${OUT}/certs/server.ext" -out "${OUT}/certs/server.crt" 2>/dev/null
    rm -f "${OUT}/certs/server.csr" "${OUT}/certs/server.ext" "${OUT}/certs/ca.srl"
fi
chmod 0600 "${OUT}/certs/ca.key"
# The broker runs as uid 1883 in its container and reads these through a bind mount: world-readable
# here; on a shared host, chown them to 1883 and make them 0600 instead.
chmod 0644 "${OUT}/certs/ca.crt" "${OUT}/certs/server.crt" "${OUT}/certs/server.key"

[[ -s "${OUT}/mesh.key" ]] || openssl rand -hex 32 >"${OUT}/mesh.key"
chmod 0600 "${OUT}/mesh.key"
key="$(tr -d '\n' <"${OUT}/mesh.key")"

passwd_tool() {
    # mosquitto_passwd -b FILE USER PASSWORD, from the host or from the broker's image.
    if command -v mosquitto_passwd >/dev/null 2>&1; then
        mosquitto_passwd "$@"
    else
        docker run --rm --user "$(id -u):$(id -g)" -v "${OUT}:/out" eclipse-mosquitto:2 \
            mosquitto_passwd "${@/#${OUT}//out}"
    fi
}

for node in "${NODES[@]}"; do
    if [[ ! -s "${OUT}/${node}.env" ]]; then
        password="$(openssl rand -hex 24)"
        printf 'CALLSHIELD_MQTT_PASSWORD=%s\n' "${password}" >"${OUT}/${node}.env"
        [[ -f "${OUT}/passwd" ]] || : >"${OUT}/passwd"
        passwd_tool -b "${OUT}/passwd" "${node}" "${password}"
    fi
    chmod 0600 "${OUT}/${node}.env"
    sed "s|@MESH_KEY@|${key}|" "${HERE}/${node}.toml" >"${OUT}/${node}.toml"
    chmod 0644 "${OUT}/${node}.toml"  # read by uid 10001 in the node's container
done
chmod 0644 "${OUT}/passwd"
echo "secrets in ${OUT}; now: docker compose -f ${HERE}/compose.yaml up -d --build"
