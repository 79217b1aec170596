"""Error rates of the recommendation's decision procedure under the null, and its power, simulated.

Runs the same simulations as tests/report/test_decide_null.py with more trials and prints the rates:
    PYTHONPATH=src python bench/decision_null.py [trials]
"""

from __future__ import annotations

import sys
from pathlib import Path

import gc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))
gc.collect = lambda *a: 0  # see the test module: statsmodels' Holm calls gc.collect()

import test_decide_null as sim  # noqa: E402

if __name__ == "__main__":
    sim.TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f"trials per rate: {sim.TRIALS}, test rows: {sim.N} (power: 2000)")
    print("false recommendation, two cheaper rungs at -margin:",
          sim._rate(lambda rng: sim._picks_cheaper(sim._ladder(rng, 0.85, [0.02, 0.02])), seed=11))
    print("false overrule, identical content:", sim._rate(lambda rng: sim._overruled(rng, 0.0), seed=13))
    print("false overrule, content worse by exactly the guard margin:",
          sim._rate(lambda rng: sim._overruled(rng, -0.02), seed=14))
    print("overrule, content worse by 8 points:", sim._rate(lambda rng: sim._overruled(rng, -0.08), seed=15))
    sim.N = 2000
    print("power, cheaper rung truly equal, 2000 rows, ~10% disagreement, margin 2 points:",
          sim._rate(lambda rng: sim._picks_cheaper(sim._ladder(rng, 0.85, [0.0])), seed=12))
