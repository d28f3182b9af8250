#!/usr/bin/env bash
# Stop everything the local stack started (and only that: processes are found through the pid
# files under .run/pids and checked against their command line), then verify that none of the
# stack's ports is still listening. Data and logs stay in .run/ (delete it for a clean slate).
#
# With arguments, stop only those services, e.g. `deploy/local/stack-down.sh kafka` (the
# others keep running; `STACK_SERVICES=kafka deploy/local/stack-up.sh` starts it again).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services="${*:-$STACK_ALL_SERVICES}"
check_services "$services"
stack_lock
ensure_dirs
if in_list alertmanager "$services"; then
    stop_service alertmanager "--storage.path=$RUN_DIR/alertmanager/data" 15
fi
if in_list prometheus "$services"; then
    stop_service prometheus "--storage.tsdb.path=$RUN_DIR/prometheus/data" 15
fi
if in_list redis "$services"; then
    stop_service redis "redis-server $STACK_HOST:$REDIS_PORT" 15
fi
if in_list kafka "$services"; then
    # Clients of this Kafka that the stack did not start (a `make run` worker in another
    # terminal, a generator, tests...) are not stopped, nor waited for: say which they are.
    # They wait for the broker quietly and stop on SIGTERM/Ctrl-C (docs/operations.md, "When
    # the broker is gone").
    broker_pid="$(running_pid kafka "kafka.Kafka $RUN_DIR/kafka/server.properties" || true)"
    while read -r pid; do
        [[ -n "$pid" && "$pid" != "$broker_pid" && "$pid" != "$$" ]] || continue
        cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120 || true)"
        log "WARNING: pid $pid (${cmd:-?}) uses Kafka on port $KAFKA_PORT and was not started by the stack: it keeps running, waiting for the broker (stop it with Ctrl-C or kill $pid)"
    done < <(ss -Htnp state established "dport = :$KAFKA_PORT" 2>/dev/null |
        grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un)
    stop_service kafka "kafka.Kafka $RUN_DIR/kafka/server.properties" 60
fi

vars=()
if in_list kafka "$services"; then vars+=(KAFKA_PORT KAFKA_CONTROLLER_PORT); fi
if in_list redis "$services"; then vars+=(REDIS_PORT); fi
if in_list prometheus "$services"; then vars+=(PROMETHEUS_PORT); fi
if in_list alertmanager "$services"; then vars+=(ALERTMANAGER_PORT); fi
if (($# == 0)); then vars+=(WORKER_PORT); fi
busy=0
for var in "${vars[@]}"; do
    port="${!var}"
    if port_listening "$port"; then
        log "WARNING: port $port ($var) is still in use by $(port_owner "$port"), which this stack did not start"
        busy=1
    fi
done
if ((busy == 0)); then
    log "down ($services): no process of it is left and none of its ports is listening"
fi
