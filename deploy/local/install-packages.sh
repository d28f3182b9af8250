#!/usr/bin/env bash
# Install the Debian packages the local stack needs, if any is missing:
#   redis-server (redis-cli), prometheus (promtool), prometheus-alertmanager (amtool),
#   curl, iproute2 (ss), a Java 17+ runtime and Maven for Kafka, a JDK's javac for the benchmark's
#   Kafka Streams peer (bench/kafka_streams, built by a test too), and openssl (the secure
#   stack's certificates).
# Non-interactive (works without stdin, as in CI). Runs apt-get only when something is missing.
# The packages' own services are NOT started: the stack runs its own processes with its own
# configs, so a policy-rc.d that refuses service starts is put in place during the install
# (when the machine has none).
set -euo pipefail

# command -> package
declare -A WANT=(
    [redis-server]=redis-server
    [redis-cli]=redis-tools
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-alertmanager]=prometheus-alertmanager
    [amtool]=prometheus-alertmanager
    [curl]=curl
    [ss]=iproute2
    [setsid]=util-linux
    [flock]=util-linux
    [java]=openjdk-17-jre-headless
    [javac]=openjdk-17-jdk-headless
    [mvn]=maven
    [openssl]=openssl
)

missing=()
for cmd in "${!WANT[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${WANT[$cmd]}")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "[stack] ERROR: missing packages ${missing[*]} and not root (no sudo)" >&2
        exit 1
    fi
else
    SUDO=()
fi

echo "[stack] installing Debian packages: ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
placed_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# placed by engagement-metrics deploy/local/install-packages.sh\nexit 101\n' |
        "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    placed_policy=1
fi
cleanup() {
    if ((placed_policy)); then "${SUDO[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are missing or older than a day.
lists=/var/lib/apt/lists
if [[ -z "$(find "$lists" -maxdepth 1 -name '*Packages*' -mtime -1 -print -quit 2>/dev/null)" ]]; then
    "${SUDO[@]}" apt-get update -q >&2
fi
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2

# Belt and braces: if a service manager started the services of the packages we have just
# installed anyway, stop them and keep them from starting at boot (they would take our ports).
# Services that were installed before are left alone.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    for pkg in "${missing[@]}"; do
        case "$pkg" in
        redis-server | prometheus | prometheus-alertmanager)
            "${SUDO[@]}" systemctl disable --now "$pkg" >/dev/null 2>&1 || true
            ;;
        esac
    done
fi
