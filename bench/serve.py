"""Serving speed: `dlrun serve` over loopback, and ONNX Runtime against dlrun's own predict, in one process.

    python bench/serve.py [--run RUN_DIR] [--requests 300]

Without --run it trains configs/salary.yaml for 5 epochs into a temporary folder. Then:
  latency    p50 / p99 of POST /predict with 1 row and with 100 rows, one request at a time (keep-alive)
  throughput requests per second of 1-row requests at concurrency 1 and 16 (--requests in all, then it stops)
  rows/s     the salary rows repeated to 100,000: ONNX Runtime on the exported model (inputs as dlrun reads them)
             against inference.batch.predict_rows (read, check, encode, forward) and `dlrun predict` on a CSV
Needs the serve extra (`pip install -c constraints.txt -e ".[serve]"`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
ROWS_FOR_THROUGHPUT = 100_000


def train_salary(runs_dir: Path) -> Path:
    import yaml

    import dlrun
    from dlrun.config.load import validate_config

    raw = yaml.safe_load((REPO / "configs" / "salary.yaml").read_text())
    raw.update(device="cpu", report=False, train={"epochs": 5})
    return dlrun.train(validate_config(raw), runs_dir).run_dir


def sample_rows(run_dir: Path, n_rows: int) -> pd.DataFrame:
    from dlrun.data.load import load_dataset
    from dlrun.run.directory import open_run_files

    saved = open_run_files(run_dir)
    frame = load_dataset(saved.cfg.data, saved.cfg.seed, tasks=saved.prep.tasks).part("test")[saved.prep.features]
    return frame.sample(n=n_rows, replace=True, random_state=0).reset_index(drop=True)


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)

    def post(self, body: bytes) -> float:
        start = time.perf_counter()
        self.connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"/predict answered {response.status}")
        return time.perf_counter() - start


def body_of(rows: pd.DataFrame) -> bytes:
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    return json.dumps({"rows": records}).encode()


def latency(url: str, body: bytes, n_requests: int) -> tuple[float, float]:
    client = Client(url)
    client.post(body)  # warm-up
    times = sorted(client.post(body) for _ in range(n_requests))
    return times[len(times) // 2] * 1000, times[min(len(times) - 1, int(0.99 * len(times)))] * 1000


def throughput(url: str, body: bytes, n_requests: int, concurrency: int) -> float:
    per_worker = n_requests // concurrency

    def work(_):
        client = Client(url)
        for _ in range(per_worker):
            client.post(body)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(work, range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - start)


def rows_per_second(run_dir: Path, rows: pd.DataFrame, work: Path) -> dict[str, float]:
    import onnxruntime as ort

    from dlrun.data.audit import check_rows
    from dlrun.export.run_export import export_run
    from dlrun.inference.batch import predict, predict_rows
    from dlrun.run.directory import open_run

    run = open_run(run_dir, "cpu")
    exported = export_run(run_dir, work / "model.onnx")
    sidecar = json.loads(exported.sidecar.read_text())
    cleaned, _ = check_rows(run.prep, rows)
    feed = {spec["name"]: (cleaned[spec["name"]].to_numpy(np.float64) if spec["type"] == "float64" else
                           cleaned[spec["name"]].astype(object).where(cleaned[spec["name"]].notna(), "").astype(str).to_numpy(object))
            for spec in sidecar["inputs"]}
    session = ort.InferenceSession(str(exported.model), providers=["CPUExecutionProvider"])
    rows.to_csv(work / "rows.csv", index=False)
    timings = {}
    for name, call in (("onnxruntime", lambda: session.run(None, feed)),
                       ("dlrun predict_rows (in memory)", lambda: predict_rows(run, rows)),
                       ("dlrun predict (CSV in and out)", lambda: predict(run_dir, work / "rows.csv", work / "out.csv"))):
        call()  # warm-up
        seconds = min(_timed(call) for _ in range(3))
        timings[name] = len(rows) / seconds
    return timings


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished run (default: train configs/salary.yaml)")
    parser.add_argument("--requests", type=int, default=300, help="requests per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = args.run or train_salary(work / "runs")
        server = subprocess.Popen([sys.executable, "-m", "dlrun", "serve", str(run_dir), "--port", "0"],
                                  cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            if not line.startswith("listening on "):
                raise SystemExit(f"dlrun serve did not start: {line!r}")
            url = line.split()[-1]
            one, hundred = body_of(sample_rows(run_dir, 1)), body_of(sample_rows(run_dir, 100))
            print(f"run: {run_dir.name}; {args.requests} requests per measurement")
            for label, body in (("1 row", one), ("100 rows", hundred)):
                p50, p99 = latency(url, body, args.requests)
                print(f"latency {label:>8}: p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
            for concurrency in (1, 16):
                print(f"throughput, 1-row requests, concurrency {concurrency:2d}: "
                      f"{throughput(url, one, args.requests, concurrency):8.1f} requests/s")
        finally:
            server.terminate()
            server.wait(timeout=60)
        for name, rate in rows_per_second(run_dir, sample_rows(run_dir, ROWS_FOR_THROUGHPUT), work).items():
            print(f"{name:32s} {rate:12,.0f} rows/s ({ROWS_FOR_THROUGHPUT:,} rows)")


if __name__ == "__main__":
    main()
