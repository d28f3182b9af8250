#!/usr/bin/env bash
# Show which services of the local stack are running (exit 1 if any is not).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_dirs
all=0
show() {
    local name="$1" pattern="$2" port="$3" pid
    if pid="$(running_pid "$name" "$pattern")"; then
        printf '%-13s running  pid %-8s 127.0.0.1:%s\n' "$name" "$pid" "$port"
    else
        printf '%-13s stopped\n' "$name"
        all=1
    fi
}
show kafka "kafka.Kafka $RUN_DIR/kafka/server.properties" "$KAFKA_PORT"
show redis "redis-server $STACK_HOST:$REDIS_PORT" "$REDIS_PORT"
show prometheus "--storage.tsdb.path=$RUN_DIR/prometheus/data" "$PROMETHEUS_PORT"
show alertmanager "--storage.path=$RUN_DIR/alertmanager/data" "$ALERTMANAGER_PORT"
echo "logs: $(rel "$LOG_DIR")/"
exit "$all"
