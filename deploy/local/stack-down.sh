#!/usr/bin/env bash
# Stop everything the local stack started (and only that: processes are found through the pid
# files under .run/pids and checked against their command line), then verify that none of the
# stack's ports is still listening. Data and logs stay in .run/ (delete it for a clean slate).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stack_lock
ensure_dirs
stop_service alertmanager "--storage.path=$RUN_DIR/alertmanager/data" 15
stop_service prometheus "--storage.tsdb.path=$RUN_DIR/prometheus/data" 15
stop_service redis "redis-server $STACK_HOST:$REDIS_PORT" 15
stop_service kafka "kafka.Kafka $RUN_DIR/kafka/server.properties" 60

busy=0
for var in KAFKA_PORT KAFKA_CONTROLLER_PORT REDIS_PORT PROMETHEUS_PORT ALERTMANAGER_PORT WORKER_PORT; do
    port="${!var}"
    if port_listening "$port"; then
        log "WARNING: port $port ($var) is still in use by $(port_owner "$port"), which this stack did not start"
        busy=1
    fi
done
if ((busy == 0)); then
    log "down: no process of the stack is left and none of its ports is listening"
fi
