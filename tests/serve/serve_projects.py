"""The serve tests' projects, in a module of its own name: `from conftest import …` inside a test picks
whichever folder's conftest was imported last (see tests/tiny.py)."""

from __future__ import annotations

import json

FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12", "eval.max_test_examples=6", "eval.bootstrap=100"]


def _generation_project(folder, model_dir):
    rows = [{"id": str(i), "input": f"the {w} news", "target": f"{t} news"}
            for i, (t, w) in enumerate([("business", "market shares"), ("sports", "match goal"), ("tech", "phone games")] * 6)]
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tunewise.yaml").write_text(f"""name: tiny-gen
task: {{type: generation, instruction: answer}}
data: {{files: [data/rows.jsonl], split: {{train: 0.6, val: 0.2, test: 0.2}}, seed: 1}}
model: {{base: {model_dir}}}
rungs: [zero-shot]
eval: {{batch_size: 8, bootstrap: 100, max_new_tokens: 6}}
""")
    return folder
