#!/usr/bin/env bash
# Start the local stack without Docker: Kafka (KRaft, one node), Redis, Prometheus and
# Alertmanager, all on 127.0.0.1, with logs, data and pid files under .run/.
# Idempotent: services already started by this stack are reused, not restarted.
# Then creates the project's topics (when the virtualenv exists; `make install` makes it).
#
# Environment: see deploy/local/lib.sh and docs/stack.md. STACK_SKIP_TOPICS=1 skips topics;
# STACK_SERVICES="kafka redis" starts only those services (default: all four).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

started_at=$SECONDS
stack_lock

"$LOCAL_DIR/install-packages.sh"
ensure_dirs
if secure_enabled; then secure_prepare; fi

# Substitute @NAME@ placeholders of a template with the values of the named variables.
render() {
    local template="$1" out="$2"
    shift 2
    local args=() name
    for name in "$@"; do
        args+=(-e "s|@${name}@|${!name}|g")
    done
    sed "${args[@]}" "$template" >"$out.tmp"
    mv "$out.tmp" "$out"
}

# --- Kafka ------------------------------------------------------------------------------------
KAFKA_DIR="$RUN_DIR/kafka"
KAFKA_LIB="$KAFKA_DIR/lib"
KAFKA_DATA_DIR="$KAFKA_DIR/data"
KAFKA_LOG="$LOG_DIR/kafka.log"
KAFKA_PATTERN="kafka.Kafka $KAFKA_DIR/server.properties"
kafka_log_offset=0
kafka_fresh=0
kafka_pid=""

resolve_kafka_libs() {
    local pom="$LOCAL_DIR/kafka/pom.xml" stamp="$KAFKA_DIR/lib.stamp" want
    want="$KAFKA_VERSION $(sha256sum "$pom" | cut -c1-16)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -d "$KAFKA_LIB" ]]; then
        return
    fi
    local repo="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}" mvn_log="$LOG_DIR/maven.log"
    log "kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies \
from Maven Central (cache: $repo)"
    rm -rf "$KAFKA_LIB.tmp"
    if ! mvn -q -B -C -f "$pom" \
        -Dkafka.version="$KAFKA_VERSION" \
        -Dmaven.repo.local="$repo" \
        dependency:copy-dependencies \
        -DincludeScope=runtime \
        -DoutputDirectory="$KAFKA_LIB.tmp" >"$mvn_log" 2>&1; then
        tail -n 20 "$mvn_log" >&2 || true
        die "could not resolve the Kafka jars with Maven; see $(rel "$mvn_log")"
    fi
    rm -rf "$KAFKA_LIB"
    mv "$KAFKA_LIB.tmp" "$KAFKA_LIB"
    printf '%s\n' "$want" >"$stamp"
}

start_kafka() {
    if kafka_pid="$(running_pid kafka "$KAFKA_PATTERN")"; then
        check_recorded_port kafka "$KAFKA_PORT" KAFKA_PORT
        log "kafka: already running (pid $kafka_pid), reusing it"
        return
    fi
    require_free_port kafka "$KAFKA_PORT" KAFKA_PORT
    require_free_port "kafka controller" "$KAFKA_CONTROLLER_PORT" KAFKA_CONTROLLER_PORT
    command -v java >/dev/null || die "java not found (Java 17+ is needed for Kafka 4)"
    mkdir -p "$KAFKA_DIR" "$KAFKA_DATA_DIR"
    resolve_kafka_libs
    render "$LOCAL_DIR/kafka/server.properties.in" "$KAFKA_DIR/server.properties" \
        KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_DATA_DIR
    local format_args=()
    if secure_enabled; then
        secure_kafka_properties "$KAFKA_DIR/server.properties"
        mapfile -t format_args < <(secure_format_args)
        secure_kafka_users "$KAFKA_DIR" "$KAFKA_DATA_DIR"
    fi
    if [[ ! -f "$KAFKA_DATA_DIR/meta.properties" ]]; then
        log "kafka: formatting $(rel "$KAFKA_DATA_DIR") (cluster id $KAFKA_CLUSTER_ID)"
        if ! java -cp "$KAFKA_LIB/*" \
            -Dlog4j2.configurationFile="$LOCAL_DIR/kafka/log4j2.properties" \
            -Dkafka.log.file="$KAFKA_LOG" \
            kafka.tools.StorageTool format --config "$KAFKA_DIR/server.properties" \
            --cluster-id "$KAFKA_CLUSTER_ID" --ignore-formatted "${format_args[@]}" \
            >>"$KAFKA_LOG" 2>&1; then
            die "kafka: formatting the storage failed; see $(rel "$KAFKA_LOG")"
        fi
    fi
    touch "$KAFKA_LOG"
    kafka_log_offset="$(stat -c %s "$KAFKA_LOG")"
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
    kafka_pid="$(spawn kafka "$KAFKA_LOG" java $KAFKA_HEAP_OPTS -XX:+UseG1GC \
        -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOCAL_DIR/kafka/log4j2.properties" \
        -Dkafka.log.file="$KAFKA_LOG" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_DIR/server.properties")"
    kafka_fresh=1
    record_port kafka "$KAFKA_PORT"
    log "kafka: starting $KAFKA_VERSION (pid $kafka_pid) on $STACK_HOST:$KAFKA_PORT, \
controller $STACK_HOST:$KAFKA_CONTROLLER_PORT"
}

kafka_ready() {
    port_listening "$KAFKA_PORT" || return 1
    # A fresh start is ready once the broker says so (the log is appended across restarts).
    if ((kafka_fresh)); then
        tail -c +"$((kafka_log_offset + 1))" "$KAFKA_LOG" | grep -q 'Kafka Server started'
    fi
}

# --- Redis ------------------------------------------------------------------------------------
REDIS_DATA_DIR="$RUN_DIR/redis"
REDIS_LOG="$LOG_DIR/redis.log"
REDIS_PATTERN="redis-server $STACK_HOST:$REDIS_PORT"

start_redis() {
    local pid
    if pid="$(running_pid redis "$REDIS_PATTERN")"; then
        log "redis: already running (pid $pid), reusing it"
    else
        require_free_port redis "$REDIS_PORT" REDIS_PORT
        mkdir -p "$REDIS_DATA_DIR"
        render "$LOCAL_DIR/redis/redis.conf.in" "$REDIS_DATA_DIR/redis.conf" \
            REDIS_PORT PID_DIR LOG_DIR REDIS_DATA_DIR
        if secure_enabled; then secure_redis_conf "$REDIS_DATA_DIR/redis.conf"; fi
        rm -f "$PID_DIR/redis.pid"
        redis-server "$REDIS_DATA_DIR/redis.conf" >>"$REDIS_LOG" 2>&1 </dev/null 9>&- ||
            die "redis did not start; see $(rel "$REDIS_LOG")"
        log "redis: started on $STACK_HOST:$REDIS_PORT"
    fi
    wait_until redis "$REDIS_LOG" "" redis_ready
    record_port redis "$REDIS_PORT"
}

redis_ready() { [[ "$(stack_redis_cli ping 2>/dev/null)" == PONG ]]; }

# --- Prometheus -------------------------------------------------------------------------------
PROM_DIR="$RUN_DIR/prometheus"
PROM_LOG="$LOG_DIR/prometheus.log"
PROM_PATTERN="--storage.tsdb.path=$PROM_DIR/data"

# The repo's config with this stack's ports; rules are read from deploy/prometheus/rules, the
# workers from the file_sd files of targets/ (deploy/local/lib.sh: worker_target_add).
render_prometheus_config() {
    mkdir -p "$PROM_DIR"
    ln -sfn "$DEPLOY_DIR/prometheus/rules" "$PROM_DIR/rules"
    # The worker of `make run` (deploy/local/run.sh) is always listed; others: worker-targets.sh.
    worker_target_add "$STACK_HOST:$WORKER_PORT"
    sed -e "s|127\.0\.0\.1:9090|$STACK_HOST:$PROMETHEUS_PORT|g" \
        -e "s|127\.0\.0\.1:9093|$STACK_HOST:$ALERTMANAGER_PORT|g" \
        "$DEPLOY_DIR/prometheus/prometheus.yml" >"$PROM_DIR/prometheus.yml.new"
    promtool check config "$PROM_DIR/prometheus.yml.new" >"$LOG_DIR/promtool.log" 2>&1 ||
        die "deploy/prometheus/prometheus.yml is invalid; see $(rel "$LOG_DIR/promtool.log")"
}

start_prometheus() {
    local pid url="http://$STACK_HOST:$PROMETHEUS_PORT"
    render_prometheus_config
    if pid="$(running_pid prometheus "$PROM_PATTERN")"; then
        check_recorded_port prometheus "$PROMETHEUS_PORT" PROMETHEUS_PORT
        if ! cmp -s "$PROM_DIR/prometheus.yml.new" "$PROM_DIR/prometheus.yml"; then
            mv "$PROM_DIR/prometheus.yml.new" "$PROM_DIR/prometheus.yml"
            curl -fsS -X POST "$url/-/reload" >/dev/null ||
                die "prometheus did not reload its configuration; see $(rel "$PROM_LOG")"
            log "prometheus: already running (pid $pid), configuration reloaded"
        else
            rm -f "$PROM_DIR/prometheus.yml.new"
            log "prometheus: already running (pid $pid), reusing it"
        fi
    else
        require_free_port prometheus "$PROMETHEUS_PORT" PROMETHEUS_PORT
        mv "$PROM_DIR/prometheus.yml.new" "$PROM_DIR/prometheus.yml"
        mkdir -p "$PROM_DIR/data"
        pid="$(spawn prometheus "$PROM_LOG" prometheus \
            --config.file="$PROM_DIR/prometheus.yml" \
            --storage.tsdb.path="$PROM_DIR/data" \
            --storage.tsdb.retention.time=15d \
            --web.listen-address="$STACK_HOST:$PROMETHEUS_PORT" \
            --web.enable-lifecycle)"
        record_port prometheus "$PROMETHEUS_PORT"
        log "prometheus: starting (pid $pid) on $url"
    fi
    wait_until prometheus "$PROM_LOG" "$pid" http_ok "$url/-/ready"
}

# --- Alertmanager -----------------------------------------------------------------------------
AM_DIR="$RUN_DIR/alertmanager"
AM_LOG="$LOG_DIR/alertmanager.log"
AM_PATTERN="--storage.path=$AM_DIR/data"
AM_CONFIG="$DEPLOY_DIR/alertmanager/alertmanager.yml"

start_alertmanager() {
    local pid url="http://$STACK_HOST:$ALERTMANAGER_PORT"
    amtool check-config "$AM_CONFIG" >"$LOG_DIR/amtool.log" 2>&1 ||
        die "deploy/alertmanager/alertmanager.yml is invalid; see $(rel "$LOG_DIR/amtool.log")"
    if pid="$(running_pid alertmanager "$AM_PATTERN")"; then
        check_recorded_port alertmanager "$ALERTMANAGER_PORT" ALERTMANAGER_PORT
        # Cheap and idempotent: pick up edits of the configuration.
        curl -fsS -X POST "$url/-/reload" >/dev/null 2>&1 || true
        log "alertmanager: already running (pid $pid), reusing it"
    else
        require_free_port alertmanager "$ALERTMANAGER_PORT" ALERTMANAGER_PORT
        mkdir -p "$AM_DIR/data"
        # An empty --cluster.listen-address disables clustering: no gossip port is opened.
        pid="$(spawn alertmanager "$AM_LOG" prometheus-alertmanager \
            --config.file="$AM_CONFIG" \
            --storage.path="$AM_DIR/data" \
            --web.listen-address="$STACK_HOST:$ALERTMANAGER_PORT" \
            --cluster.listen-address=)"
        record_port alertmanager "$ALERTMANAGER_PORT"
        log "alertmanager: starting (pid $pid) on $url"
    fi
    wait_until alertmanager "$AM_LOG" "$pid" http_ok "$url/-/ready"
}

# --- Topics -----------------------------------------------------------------------------------
create_topics() {
    if [[ "${STACK_SKIP_TOPICS:-0}" == 1 ]]; then
        return
    fi
    local py="$REPO_ROOT/.venv/bin/python"
    if [[ ! -x "$py" ]]; then
        log "topics: skipped (no .venv yet: run 'make install', then 'make stack-up' again)"
        return
    fi
    local out="$LOG_DIR/topics.log"
    if ! (cd "$REPO_ROOT" && "$py" -m engagement_cli topics --bootstrap "$KAFKA_BOOTSTRAP" \
        --timeout "$STACK_TIMEOUT") >"$out" 2>&1; then
        cat "$out" >&2
        die "creating the Kafka topics failed; see $(rel "$out")"
    fi
    sed 's/^/[stack] topics: /' "$out" >&2
}

# --- Main -------------------------------------------------------------------------------------
# STACK_SERVICES picks a subset (e.g. STACK_SERVICES="kafka redis"; default: all four).
check_services "$STACK_SERVICES"
wants() { in_list "$1" "$STACK_SERVICES"; }
# Kafka takes the longest to boot: start it first and start the others meanwhile.
if wants kafka; then
    start_kafka
    if [[ -z "$(running_pid kafka "$KAFKA_PATTERN" || true)" ]]; then
        die "kafka exited at once; see $(rel "$KAFKA_LOG")"
    fi
fi
if wants redis; then start_redis; fi
if wants prometheus; then start_prometheus; fi
if wants alertmanager; then start_alertmanager; fi
if wants kafka; then
    wait_until kafka "$KAFKA_LOG" "$kafka_pid" kafka_ready
    create_topics
    if secure_enabled; then secure_kafka_acls; fi
fi

up=()
if wants kafka; then up+=("kafka $KAFKA_BOOTSTRAP (controller :$KAFKA_CONTROLLER_PORT)"); fi
if wants redis; then up+=("redis $STACK_HOST:$REDIS_PORT"); fi
if wants prometheus; then up+=("prometheus http://$STACK_HOST:$PROMETHEUS_PORT"); fi
if wants alertmanager; then up+=("alertmanager http://$STACK_HOST:$ALERTMANAGER_PORT"); fi
joined="$(printf ', %s' "${up[@]}")"
log "up in $((SECONDS - started_at))s: ${joined:2}; logs in $(rel "$LOG_DIR")"
