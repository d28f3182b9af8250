#!/usr/bin/env bash
# The workers the local stack's Prometheus scrapes (job engagement-worker), kept as file_sd
# files in .run/prometheus/targets/ (deploy/prometheus/prometheus.yml).
#
#   deploy/local/worker-targets.sh add HOST:PORT      scrape the worker at HOST:PORT
#   deploy/local/worker-targets.sh remove HOST:PORT   stop scraping it
#   deploy/local/worker-targets.sh list               the addresses listed
#
# stack-up.sh lists the worker of `make run` (127.0.0.1:WORKER_PORT). Add a worker you start
# yourself, e.g. `engagement worker --web-port 6067` next to it:
#   deploy/local/worker-targets.sh add 127.0.0.1:6067
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    echo "usage: $0 add|remove HOST:PORT | list" >&2
    exit 2
}

case "${1:-}" in
add | remove)
    (($# == 2)) || usage
    [[ "$2" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || die "not a HOST:PORT: '$2'"
    "worker_target_$1" "$2"
    log "prometheus: $1 worker target $2 ($(rel "$PROM_TARGETS_DIR"))"
    ;;
list)
    (($# == 1)) || usage
    for file in "$PROM_TARGETS_DIR"/worker-*.json; do
        [[ -e "$file" ]] || continue
        sed -n 's/.*"targets": \["\([^"]*\)"\].*/\1/p' "$file"
    done
    ;;
*) usage ;;
esac
