#!/bin/sh
# A small durable task for `stint run`: counts to 5, heartbeating its progress, and resumes from
# the last checkpoint if an earlier attempt was interrupted. Its standard output is its result.
set -eu
start=0
if [ -n "${STINT_CHECKPOINT:-}" ]; then
    # The checkpoint is the last heartbeat payload, e.g. {"done":3}.
    start=$(printf '%s' "$STINT_CHECKPOINT" | tr -cd '0-9')
fi
i=${start:-0}
while [ "$i" -lt 5 ]; do
    i=$((i + 1))
    echo "{\"done\":$i}" >&"$STINT_HEARTBEAT_FD"
    echo "step $i of 5 (attempt $STINT_ATTEMPT)" >&2
    sleep 0.2
done
echo "{\"counted\":$i,\"resumed_from\":$start}"
