#!/usr/bin/env bash
# A real multi-node Ray cluster on one machine: a head and N worker nodes, each its own raylet
# started with `ray start`, for tests and for trying `ray job submit` by hand.
#
#   cluster/local_cluster.sh start [WORKERS]   # head + WORKERS worker nodes (default 1)
#   cluster/local_cluster.sh status
#   cluster/local_cluster.sh stop              # this cluster's processes only
#
# Settings (environment):
#   GR_CLUSTER_DIR   the head's Ray temp dir (worker i: GR_CLUSTER_DIR-wi); tells this
#                    cluster's processes apart from any other Ray on the machine (default
#                    /tmp/gr-cluster; keep it short: Unix socket paths)
#   GR_CLUSTER_PORT  GCS port (default 6390); the dashboard / Jobs API is on GR_DASHBOARD_PORT
#                    (default 8275), the Ray client server on GR_CLIENT_PORT (default 6391)
#   GR_NODE_CPUS     logical CPUs per node (default 2)
#   PYTHON_BIN       the bin folder of guardray's venv (default .venv/bin): nodes run the job's
#                    `python` from their PATH, so the venv goes first
# Each node gets a custom resource naming it (node:head, node:w1, ...) as `gr_head` / `gr_w1`:
# a task that asks for {"gr_w1": 0.01} runs on worker 1.
# Job drivers and workers inherit the nodes' environment: export AWS_* (or AWS_ENDPOINT_URL_S3
# for an S3-compatible store) before `start`, as a cloud node would get them from its role.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${GR_CLUSTER_DIR:-/tmp/gr-cluster}"
PORT="${GR_CLUSTER_PORT:-6390}"
DASH="${GR_DASHBOARD_PORT:-8275}"
CLIENT="${GR_CLIENT_PORT:-6391}"
CPUS="${GR_NODE_CPUS:-2}"
BIN="$(cd "${PYTHON_BIN:-.venv/bin}" && pwd)"
export PATH="$BIN:$PATH" RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"

free_port() {  # each node's dashboard agent needs its own HTTP port (Ray's default: 52365)
  "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids() {  # processes of this cluster: Ray's own carry a node's temp dir or the GCS address
  pgrep -f -- "$DIR(-w[0-9]+)?/|--temp-dir=$DIR|[0-9.]+:$PORT( |$)" || true
}

start() {
  local workers="${1:-1}"
  if [ -n "$(pids)" ]; then
    echo "a cluster already runs with temp dir $DIR (stop it first)" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  ray start --head --node-ip-address 127.0.0.1 --port "$PORT" \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASH" --ray-client-server-port "$CLIENT" \
    --num-cpus "$CPUS" --resources '{"gr_head": 1}' --temp-dir "$DIR" \
    --dashboard-agent-listen-port "$(free_port)" \
    --disable-usage-stats >"$DIR/head.log" 2>&1 || { cat "$DIR/head.log" >&2; stop >/dev/null; exit 1; }
  for i in $(seq 1 "$workers"); do
    # Its own temp dir, as on a separate machine: nodes sharing one would unpack each job's
    # working_dir into the same folder, and the second unpack deletes the driver's cwd.
    mkdir -p "$DIR-w$i"
    ray start --address "127.0.0.1:$PORT" --node-ip-address 127.0.0.1 \
      --num-cpus "$CPUS" --resources "{\"gr_w$i\": 1}" --temp-dir "$DIR-w$i" \
      --dashboard-agent-listen-port "$(free_port)" \
      >"$DIR/worker$i.log" 2>&1 || { cat "$DIR/worker$i.log" >&2; stop >/dev/null; exit 1; }
  done
  # The Jobs API answers "No available agent to submit job" until the head's dashboard agent
  # has registered: wait for a real (empty) job to be accepted.
  for _ in $(seq 1 60); do
    if ray job submit --address "http://127.0.0.1:$DASH" --no-wait -- true \
        >"$DIR/ready.log" 2>&1; then
      echo "cluster up: head + $workers worker(s); jobs: http://127.0.0.1:$DASH; ray: 127.0.0.1:$PORT"
      return 0
    fi
    sleep 2
  done
  cat "$DIR/ready.log" >&2
  echo "the Jobs API did not accept a job within 120 s; stopping the cluster" >&2
  stop >/dev/null
  exit 1
}

status() {
  RAY_ADDRESS="127.0.0.1:$PORT" ray status
}

stop() {
  # Not `ray stop`: it ends every Ray process on the machine, other clusters and tests too.
  local p
  p="$(pids)"
  [ -z "$p" ] && { echo "no cluster with temp dir $DIR"; return 0; }
  kill $p 2>/dev/null || true
  for _ in $(seq 1 20); do
    [ -z "$(pids)" ] && break
    sleep 0.5
  done
  p="$(pids)"
  [ -n "$p" ] && kill -9 $p 2>/dev/null || true
  echo "cluster stopped"
}

case "${1:-}" in
  start) start "${2:-1}" ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start [WORKERS] | status | stop" >&2; exit 2 ;;
esac
