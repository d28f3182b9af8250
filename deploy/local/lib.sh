# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Shared settings and helpers of the local stack (sourced by the other scripts; not run).
#
# Every port and path can be overridden from the environment (docs/stack.md):
#   KAFKA_PORT=9092  KAFKA_CONTROLLER_PORT=19093  REDIS_PORT=6379
#   PROMETHEUS_PORT=9090  ALERTMANAGER_PORT=9093  WORKER_PORT=6066
#   KAFKA_VERSION=4.3.1  ENGAGEMENT_RUN_DIR=<repo>/.run  STACK_TIMEOUT=60 (seconds per service)
#   STACK_SERVICES="kafka redis prometheus alertmanager" (what stack-up.sh starts)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEPLOY_DIR="$REPO_ROOT/deploy"
LOCAL_DIR="$DEPLOY_DIR/local"

STACK_HOST=127.0.0.1
# SECURE=1 (or STACK_SECURE=1): Kafka over SASL_SSL and Redis over TLS with an ACL user
# (deploy/local/secure.sh), with a run directory and ports of its own by default, so that it
# runs alongside the plain stack.
STACK_SECURE="${STACK_SECURE:-${SECURE:-0}}"
if [[ "$STACK_SECURE" == 1 ]]; then
    ENGAGEMENT_RUN_DIR="${ENGAGEMENT_RUN_DIR:-$REPO_ROOT/.run/secure-stack}"
    KAFKA_PORT="${KAFKA_PORT:-49092}"
    KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-49093}"
    REDIS_PORT="${REDIS_PORT:-46379}"
    PROMETHEUS_PORT="${PROMETHEUS_PORT:-49090}"
    ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-49094}"
    WORKER_PORT="${WORKER_PORT:-46066}"
fi
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${REDIS_PORT:-6379}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9093}"
WORKER_PORT="${WORKER_PORT:-6066}"
# Pinned Kafka: see docs/stack.md ("Kafka version").
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
# A fixed cluster id (base64 of "engagement-local"): the data directory is formatted once.
KAFKA_CLUSTER_ID="${KAFKA_CLUSTER_ID:-ZW5nYWdlbWVudC1sb2NhbA}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
STACK_TIMEOUT="${STACK_TIMEOUT:-60}"
# Which services stack-up.sh starts (a subset, e.g. "kafka redis" for the fault tests' private
# stack); stack-down.sh and stack-status.sh take service names as arguments instead.
STACK_ALL_SERVICES="kafka redis prometheus alertmanager"
STACK_SERVICES="${STACK_SERVICES:-$STACK_ALL_SERVICES}"

RUN_DIR="${ENGAGEMENT_RUN_DIR:-$REPO_ROOT/.run}"
LOG_DIR="$RUN_DIR/logs"
PID_DIR="$RUN_DIR/pids"

export KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-$STACK_HOST:$KAFKA_PORT}"

# shellcheck source=deploy/local/secure.sh
source "$LOCAL_DIR/secure.sh"

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
    printf '[stack] ERROR: %s\n' "$*" >&2
    exit 1
}

# Path relative to the repo when it is inside it (shorter messages).
rel() {
    local p="$1"
    printf '%s' "${p#"$REPO_ROOT"/}"
}

ensure_dirs() { mkdir -p "$LOG_DIR" "$PID_DIR"; }

# One stack script at a time per run directory (e.g. parallel test processes calling
# stack-up.sh): an exclusive lock on fd 9, released when the script exits. Long-running
# children are started with fd 9 closed, so they never hold it.
stack_lock() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/stack.lock"
    flock -w 900 9 || die "another stack script has held $(rel "$RUN_DIR")/stack.lock for 15 minutes"
}

# Is something listening on 127.0.0.1:PORT (or on every address)?
port_listening() {
    local port="$1"
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q .
}

# Who listens on PORT ("pid=123 (java)" or "unknown").
port_owner() {
    local port="$1" line
    line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)"
    if [[ "$line" =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
        printf 'pid=%s (%s)' "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}"
    else
        printf 'an unknown process'
    fi
}

# The pid in NAME's pid file if that process is alive and its command line contains PATTERN.
running_pid() {
    local name="$1" pattern="$2" pidfile="$PID_DIR/$1.pid" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
    printf '%s' "$pid"
}

# Fail clearly if a port we need is taken by something we did not start.
require_free_port() {
    local service="$1" port="$2" var="$3"
    if port_listening "$port"; then
        die "$service cannot start: 127.0.0.1:$port is already in use by $(port_owner "$port") \
(not started by this stack). Stop it or choose another port with $var=..."
    fi
}

# Wait until COMMAND succeeds, up to STACK_TIMEOUT seconds; while PID (if given) stays alive.
wait_until() {
    local service="$1" logfile="$2" pid="$3"
    shift 3
    local deadline=$((SECONDS + STACK_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 2>/dev/null || true
            die "$service exited during start-up; see $(rel "$logfile")"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$logfile" >&2 2>/dev/null || true
            die "$service did not become ready within ${STACK_TIMEOUT}s; see $(rel "$logfile")"
        fi
        sleep 0.3
    done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# Remember the port a service was started on, to detect a restart with other settings.
record_port() { printf '%s\n' "$2" >"$PID_DIR/$1.port"; }
check_recorded_port() {
    local name="$1" port="$2" var="$3" recorded
    recorded="$(cat "$PID_DIR/$name.port" 2>/dev/null || true)"
    if [[ -n "$recorded" && "$recorded" != "$port" ]]; then
        die "$name is already running on port $recorded, but $var=$port was asked for: \
run 'make stack-down' first"
    fi
}

# Stop NAME (pid file + command-line check), TERM then KILL after GRACE seconds.
stop_service() {
    local name="$1" pattern="$2" grace="${3:-30}" pid
    if pid="$(running_pid "$name" "$pattern")"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + grace))
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                log "$name did not stop within ${grace}s: killing it"
                kill -KILL "$pid" 2>/dev/null || true
                sleep 0.5
                break
            fi
            sleep 0.2
        done
    fi
    rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.port"
}

# Start a long-running foreground program in the background, detached from the terminal's
# signals, with its output in LOGFILE and its pid in the pid file.
spawn() {
    local name="$1" logfile="$2"
    shift 2
    setsid "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
    local pid=$!
    printf '%s\n' "$pid" >"$PID_DIR/$name.pid"
    printf '%s' "$pid"
}

# Is SERVICE one of the names in the list LIST (space-separated)?
in_list() {
    local service="$1" list="$2" name
    for name in $list; do
        [[ "$name" == "$service" ]] && return 0
    done
    return 1
}

# Check that every name in LIST is a service of the stack.
check_services() {
    local name
    for name in $1; do
        in_list "$name" "$STACK_ALL_SERVICES" ||
            die "unknown service '$name' (the services are: $STACK_ALL_SERVICES)"
    done
}

# --- Prometheus's worker targets --------------------------------------------------------------
# The workers Prometheus scrapes: one file_sd file per worker, targets/worker-HOST_PORT.json
# next to the rendered config (deploy/prometheus/prometheus.yml reads targets/worker-*.json and
# sees a file come or go within seconds). stack-up.sh lists the worker of `make run`
# (WORKER_PORT); deploy/local/worker-targets.sh adds and removes others.
PROM_TARGETS_DIR="$RUN_DIR/prometheus/targets"

worker_target_file() { printf '%s/worker-%s.json' "$PROM_TARGETS_DIR" "${1//[^A-Za-z0-9.-]/_}"; }

# worker_target_add HOST:PORT: scrape the worker at HOST:PORT (the file is written atomically).
worker_target_add() {
    local file
    file="$(worker_target_file "$1")"
    mkdir -p "$PROM_TARGETS_DIR"
    printf '[{"targets": ["%s"], "labels": {}}]\n' "$1" >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

# worker_target_remove HOST:PORT: stop scraping it.
worker_target_remove() { rm -f "$(worker_target_file "$1")"; }
