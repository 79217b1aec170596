"""Benchmark: audit 100,000 synthetic rows (~500 characters, planted duplicates and PII), and compare
PII detection with a named peer (presidio-analyzer's pattern recognizers) in the same run.

    OMP_NUM_THREADS=1 PYTHONPATH=src:bench python bench/audit_100k.py [--rows 100000] [--pii-rows 10000]
        [--peer-python /tmp/peer-venv/bin/python] [--tokenizer smollm2-135m-instruct] [--out results.json]

The peer runs in its own environment (see bench/audit_pii_peer.py for the install command); without it
the PII comparison is skipped and the script says so. The audit is timed without
``suspected_mislabels`` (embedding 100k rows with MiniLM on 2 cores is a separate, opt-in cost).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import audit_synth as synth

from tunewise.data.audit import AuditSettings, run_audit
from tunewise.data.load import load_file
from tunewise.data.pii import find_pii


def bench_audit(rows: int, tokenizer_spec: str | None) -> dict:
    data, planted = synth.make_rows(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps({k: r[k] for k in ("id", "input", "target")}) + "\n" for r in data))
        tokenizer = None
        if tokenizer_spec:
            from tunewise.models.load import load_tokenizer, resolve

            tokenizer = load_tokenizer(resolve(tokenizer_spec))
        start, cpu = time.perf_counter(), time.process_time()
        loaded = load_file(path)
        loaded_s = time.perf_counter() - start
        settings = AuditSettings(mislabels=False, task_type="classification", labels=[f"label{i}" for i in range(5)],
                                 max_tokens=512)
        audit = run_audit(loaded, settings, tokenizer=tokenizer)
        total_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    checks = audit["checks"]
    near_found = {p["b"] for p in checks["near_duplicates"]["pairs"] if p["b"].startswith("near")}
    truth = [r["pii"] for r in data]
    by_id: dict[str, list] = {}
    for f in checks["pii"]["findings"]:
        by_id.setdefault(f["id"], []).append([f["type"], f["start"], f["end"]])
    found = [by_id.get(r["id"], []) for r in data]
    return {
        "rows": rows, "mean_chars": round(sum(len(r["input"]) for r in data) / rows),
        "load_seconds": round(loaded_s, 2), "audit_seconds_total": round(total_s, 2),
        "audit_cpu_seconds_total": round(cpu_s, 2),
        "seconds_per_check": audit["seconds"], "tokenizer": checks["too_long"]["tokenizer"],
        "exact_duplicates": {"planted": planted["exact_duplicates"], "found": checks["exact_duplicates"]["count"]},
        "near_duplicates": {"planted": planted["near_duplicates_planted"], "planted_found": len(near_found),
                            "pairs_reported": checks["near_duplicates"]["count"]},
        "pii_rows": checks["pii"]["count"], "pii_score": synth.score(truth, found)["all"],
    }


def bench_pii(n: int, peer_python: str | None) -> dict:
    rows = synth.pii_eval_rows(n)
    truth = [r["pii"] for r in rows]
    start, cpu = time.perf_counter(), time.process_time()
    found = [[[s.type, s.start, s.end] for s in find_pii(r["input"])] for r in rows]
    ours_s, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    out = {"rows": n, "entities": sum(len(t) for t in truth),
           "tunewise": {"seconds": round(ours_s, 3), "cpu_seconds": round(ours_cpu, 3), "rows_per_second": round(n / ours_s), "rows_per_cpu_second": round(n / ours_cpu),
                        "six_types": synth.score(truth, found, synth.PII_KINDS[:6]),
                        "with_secrets": synth.score(truth, found)["all"]}}
    if not peer_python or not Path(peer_python).exists():
        out["peer"] = {"skipped": "no peer environment: python3.11 -m venv /tmp/peer-venv && "
                       "/tmp/peer-venv/bin/pip install presidio-analyzer==2.2.366"}
        return out
    stdin = "".join(json.dumps({"id": r["id"], "input": r["input"]}) + "\n" for r in rows)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([peer_python, str(Path(__file__).with_name("audit_pii_peer.py"))], input=stdin,
                          capture_output=True, text=True, env=env, check=True)
    peer = json.loads(proc.stdout)
    # The peer has no recognizer for API keys/secrets: it is scored on the six types it covers.
    out["peer"] = {"name": f"presidio-analyzer {peer['version']} pattern recognizers",
                   "seconds": round(peer["seconds"], 3), "cpu_seconds": round(peer["cpu_seconds"], 3), "rows_per_second": round(n / peer["seconds"]), "rows_per_cpu_second": round(n / peer["cpu_seconds"]),
                   "six_types": synth.score(truth, peer["found"], synth.PII_KINDS[:6])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--pii-rows", type=int, default=10_000)
    ap.add_argument("--peer-python", default="/tmp/peer-venv/bin/python")
    ap.add_argument("--tokenizer", default=None, help="A model spec whose tokenizer measures too_long.")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(), "python": sys.version.split()[0],
                          "platform": platform.platform(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}}
    result["audit"] = bench_audit(args.rows, args.tokenizer)
    print(json.dumps(result["audit"], indent=1), flush=True)
    result["pii"] = bench_pii(args.pii_rows, args.peer_python)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result["pii"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
