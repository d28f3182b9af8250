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
#     (0: none), stopped with the worker: SIGTERM or Ctrl-C to this script stops both (their
#     process groups), killed RUN_STOP_TIMEOUT (25) seconds later if still running.
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
# The generator and the worker each run in a process group of their own (setsid, as
# lib.sh's spawn), so that stopping them reaches every process they started. SIGTERM or Ctrl-C
# to this script (or to `make run`) is passed on to both (a worker stops within
# ENGAGEMENT_STOP_TIMEOUT_SECONDS, 12 s, whatever the broker's state; docs/operations.md "When
# the broker is gone"); a second Ctrl-C is passed on too (the worker then stops at once);
# whatever still runs RUN_STOP_TIMEOUT seconds (25) after the first signal is killed.
generator_pid=""
worker_pid=""
stopping=0
stop_all() {
    local sig="$1" pid deadline
    stopping=1
    for pid in $generator_pid $worker_pid; do kill "-$sig" -- "-$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + ${RUN_STOP_TIMEOUT:-25}))
    for pid in $generator_pid $worker_pid; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                log "pid $pid still running ${RUN_STOP_TIMEOUT:-25}s after SIG$sig: killing its process group"
                kill -KILL -- "-$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    done
}
on_signal() {
    local sig="$1" code="$2" pid
    if ((stopping)); then # a second signal: passed on; the first call keeps waiting
        for pid in $generator_pid $worker_pid; do kill "-$sig" -- "-$pid" 2>/dev/null || true; done
        return 0
    fi
    log "SIG$sig: stopping the worker and the generator"
    stop_all "$sig"
    exit "$code"
}
on_exit() { ((stopping)) || stop_all TERM; }
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap on_exit EXIT

# A live demo generator: the same simulated mix, stamped now, at DEMO_LIVE_RATE records/s.
if [[ "${DEMO_LIVE_RATE:-20}" != 0 ]]; then
    log "demo: live generator at ${DEMO_LIVE_RATE:-20} records/s (log: $(rel "$LOG_DIR/demo-live.log"))"
    setsid "$ENGAGEMENT" simulate --bootstrap "$KAFKA_BOOTSTRAP" --live --rate "${DEMO_LIVE_RATE:-20}" \
        --duration 24h --users "${DEMO_USERS:-300}" --seed "$((${DEMO_SEED:-1} + 1))" \
        --progress lines >"$LOG_DIR/demo-live.log" 2>&1 </dev/null &
    generator_pid=$!
fi

log "worker: starting in the foreground (Ctrl-C stops it and the generator; 'make stack-down' stops the stack)"
log "watch it:  curl -s http://$STACK_HOST:$WORKER_PORT/snapshot | python3 -m json.tool"
log "           curl -s http://$STACK_HOST:$WORKER_PORT/metrics | grep ^engagement_active_users"
log "           curl -s http://$STACK_HOST:$WORKER_PORT/at-risk   or   .venv/bin/engagement at-risk"
setsid "$ENGAGEMENT" worker --bootstrap "$KAFKA_BOOTSTRAP" --redis-url "$REDIS_URL" \
    --web-host "$STACK_HOST" --web-port "$WORKER_PORT" --data-dir "$RUN_DIR/worker" </dev/null &
worker_pid=$!
rc=0
wait "$worker_pid" || rc=$?
exit "$rc"
