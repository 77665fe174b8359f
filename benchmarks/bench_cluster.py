"""The debug pipeline submitted to a real Ray cluster of one node against two, same CPUs in all.

    python benchmarks/bench_cluster.py [--cpus 4] [--repeats 1]

For each layout, `cluster/local_cluster.sh` starts the cluster on this machine (one node with
``--cpus`` logical CPUs, or a head and a worker with half each), the debug pipeline is
submitted through the Jobs API (`ray job submit --working-dir . --runtime-env
cluster/runtime_env.yaml`) with its output on a moto S3 server on 127.0.0.1, and the job's
wall-clock time is measured from submission to its end (working-dir upload included; cluster
start not included). Prints one table: layout, seconds per run, and the ratio to one node.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _bench import machine, setup

REPO = setup()
BIN = Path(sys.executable).parent
SCRIPT = REPO / "cluster" / "local_cluster.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_layout(workers: int, cpus: int, s3: str, bucket: str, repeats: int) -> list[float]:
    """Seconds of each submitted run on a head + ``workers`` cluster of ``cpus`` CPUs."""
    per_node = cpus // (workers + 1)
    env = {**os.environ, "GR_CLUSTER_DIR": f"/tmp/gr-bench-{uuid.uuid4().hex[:6]}",
           "GR_CLUSTER_PORT": str(free_port()), "GR_DASHBOARD_PORT": str(free_port()),
           "GR_CLIENT_PORT": str(free_port()), "GR_NODE_CPUS": str(per_node),
           "PYTHON_BIN": str(BIN), "AWS_ENDPOINT_URL_S3": s3, "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("RAY_ADDRESS", None)
    address = f"http://127.0.0.1:{env['GR_DASHBOARD_PORT']}"
    times = []
    try:
        subprocess.run(["bash", str(SCRIPT), "start", str(workers)], env=env, check=True,
                       cwd=REPO, capture_output=True)
        for i in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
                 "--runtime-env", "cluster/runtime_env.yaml", "--", "python", "jobs/pipeline.py",
                 "--config", "configs/debug/pipeline.yaml",
                 f"output_dir=s3://{bucket}/w{workers}-{i}"],
                env=env, cwd=REPO, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, cwd=REPO, capture_output=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", type=int, default=4, help="logical CPUs of the whole cluster")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = f"http://127.0.0.1:{port}"
    bucket = "guardray-bench"
    boto3.client("s3", endpoint_url=s3, aws_access_key_id="bench",
                 aws_secret_access_key="bench", region_name="us-east-1").create_bucket(
        Bucket=bucket)
    try:
        rows = [(f"1 node x {args.cpus} CPUs", run_layout(0, args.cpus, s3, bucket, args.repeats)),
                (f"2 nodes x {args.cpus // 2} CPUs",
                 run_layout(1, args.cpus, s3, bucket, args.repeats))]
    finally:
        server.stop()
    print(machine(cluster_cpus=args.cpus))
    print("| layout | job seconds (each run) | median | vs 1 node |")
    print("|---|---|---:|---:|")
    base = statistics.median(rows[0][1])
    for name, times in rows:
        med = statistics.median(times)
        print(f"| {name} | {', '.join(f'{t:.0f}' for t in times)} | {med:.0f} | "
              f"{med / base:.2f}x |")


if __name__ == "__main__":
    main()
