#!/usr/bin/env bash
# `make run`: the local stack, the topics, a demo, and the live worker when it exists.
#
#  1. deploy/local/stack-up.sh: Kafka, Redis, Prometheus, Alertmanager (reused if running) and
#     the project's topics.
#  2. Demo (if `engagement simulate` exists): a seeded record stream written to
#     .run/demo/events.jsonl and replayed with `engagement replay`; the snapshot is printed and
#     kept in .run/demo/snapshot.json.
#  3. Live (if `engagement worker` exists): the demo records loaded into Kafka (`engagement
#     load`), then the worker in the foreground on WORKER_PORT (Ctrl-C stops it; `make
#     stack-down` stops the rest).
#
#  4. A live generator (`engagement simulate --live`) in the background at DEMO_LIVE_RATE records/s
#     (0: none), stopped with the worker.
#
# The demo's history is 40 days (at least 38: D30 retention needs the cohorts that signed up 31-37
# days ago, seen on their day +30), so every row of `engagement top` has a value.
# Environment: DEMO_USERS (300), DEMO_DURATION (40d), DEMO_RATE (0.1 records/s), DEMO_SEED (1),
# DEMO_LIVE_RATE (20), DEMO_DIR (.run/demo), RUN_DEMO=0 to skip the demo, RUN_WORKER=0 to skip
# the worker; ports as in docs/stack.md.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENGAGEMENT="$REPO_ROOT/.venv/bin/engagement"
[[ -x "$ENGAGEMENT" ]] || die "no .venv/bin/engagement: run 'make install' first"

"$LOCAL_DIR/stack-up.sh"

has_command() { "$ENGAGEMENT" "$1" --help >/dev/null 2>&1; }

export KAFKA_BOOTSTRAP WORKER_PORT
export REDIS_URL="${REDIS_URL:-redis://$STACK_HOST:$REDIS_PORT/0}"

# --- Demo: simulate a file, replay it ---------------------------------------------------------
if [[ "${RUN_DEMO:-1}" != 0 ]]; then
    if has_command simulate && has_command replay; then
        demo_dir="${DEMO_DIR:-$RUN_DIR/demo}"
        mkdir -p "$demo_dir"
        log "demo: simulating ${DEMO_USERS:-300} users over ${DEMO_DURATION:-40d} into $(rel "$demo_dir")/events.jsonl"
        "$ENGAGEMENT" simulate --users "${DEMO_USERS:-300}" --duration "${DEMO_DURATION:-40d}" \
            --rate "${DEMO_RATE:-0.1}" --seed "${DEMO_SEED:-1}" --progress none \
            --out "$demo_dir/events.jsonl" 2>"$LOG_DIR/demo-simulate.log" ||
            die "engagement simulate failed; see $(rel "$LOG_DIR/demo-simulate.log")"
        as_of="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        log "demo: replaying it as of $as_of"
        "$ENGAGEMENT" replay --as-of "$as_of" --progress none "$demo_dir/events.jsonl" \
            >"$demo_dir/snapshot.json" 2>"$LOG_DIR/demo-replay.log" ||
            die "engagement replay failed; see $(rel "$LOG_DIR/demo-replay.log")"
        cat "$demo_dir/snapshot.json"
        log "demo: snapshot saved in $(rel "$demo_dir")/snapshot.json"
    else
        log "demo: skipped ('engagement simulate' / 'engagement replay' not available yet)"
    fi
fi

cat >&2 <<EOF
[stack] endpoints:
  Kafka          $KAFKA_BOOTSTRAP   (topics: product-events, survey-answers, dead-letters, churn-signals)
  Redis          redis://$STACK_HOST:$REDIS_PORT
  Prometheus     http://$STACK_HOST:$PROMETHEUS_PORT
  Alertmanager   http://$STACK_HOST:$ALERTMANAGER_PORT
  Worker         http://$STACK_HOST:$WORKER_PORT/metrics  and  http://$STACK_HOST:$WORKER_PORT/snapshot
  Logs           $(rel "$LOG_DIR")/
EOF

# --- Live: the demo records into Kafka + the worker ------------------------------------------
if [[ "${RUN_WORKER:-1}" == 0 ]]; then
    exit 0
fi
if ! has_command worker; then
    log "worker: 'engagement worker' is not available; the stack stays up ('make stack-down' stops it)"
    exit 0
fi
demo_file="${DEMO_DIR:-$RUN_DIR/demo}/events.jsonl"
if [[ -s "$demo_file" ]] && has_command load; then
    log "demo: loading $(rel "$demo_file") into Kafka ($KAFKA_BOOTSTRAP)"
    "$ENGAGEMENT" load --bootstrap "$KAFKA_BOOTSTRAP" "$demo_file" 2>"$LOG_DIR/demo-load.log" ||
        die "engagement load failed; see $(rel "$LOG_DIR/demo-load.log")"
fi
# A live demo generator: the same simulated mix, stamped now, at DEMO_LIVE_RATE records/s.
generator_pid=""
if [[ "${DEMO_LIVE_RATE:-20}" != 0 ]]; then
    log "demo: live generator at ${DEMO_LIVE_RATE:-20} records/s (log: $(rel "$LOG_DIR/demo-live.log"))"
    "$ENGAGEMENT" simulate --bootstrap "$KAFKA_BOOTSTRAP" --live --rate "${DEMO_LIVE_RATE:-20}" \
        --duration 24h --users "${DEMO_USERS:-300}" --seed "$((${DEMO_SEED:-1} + 1))" \
        --progress lines >"$LOG_DIR/demo-live.log" 2>&1 &
    generator_pid=$!
fi
worker_pid=""
stop_all() {
    trap - EXIT INT TERM
    for pid in $generator_pid $worker_pid; do kill "$pid" 2>/dev/null || true; done
    if [[ -n "$worker_pid" ]]; then wait "$worker_pid" 2>/dev/null || true; fi
}
trap stop_all EXIT INT TERM

log "worker: starting in the foreground (Ctrl-C stops it and the generator; 'make stack-down' stops the stack)"
log "watch it:  curl -s http://$STACK_HOST:$WORKER_PORT/snapshot | python3 -m json.tool"
log "           curl -s http://$STACK_HOST:$WORKER_PORT/metrics | grep ^engagement_active_users"
log "           curl -s http://$STACK_HOST:$WORKER_PORT/at-risk   or   .venv/bin/engagement at-risk"
"$ENGAGEMENT" worker --bootstrap "$KAFKA_BOOTSTRAP" --redis-url "$REDIS_URL" \
    --web-host "$STACK_HOST" --web-port "$WORKER_PORT" --data-dir "$RUN_DIR/worker" &
worker_pid=$!
wait "$worker_pid"
