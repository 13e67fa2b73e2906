#!/usr/bin/env python3
"""Puts training runs side by side: per epoch, the mean training loss and accuracy (from the
`--log` JSON lines of `edgetune finetune`, or of tools/torch_recipe.py, which writes the same rows)
and the validation accuracy (the "epoch N validation accuracy X" lines of each run's printed
output). Prints a Markdown table. Standard library only.

  python3 tools/compare_runs.py edgetune=build/runs/r20_fashion torch=build/runs/r20_fashion_torch

Each NAME=STEM reads STEM.jsonl and STEM.out.
"""
import json
import re
import sys
from collections import defaultdict


def load(stem: str) -> tuple[dict, dict]:
    """({epoch: (mean loss, mean accuracy, steps)}, {epoch: validation accuracy})."""
    rows = defaultdict(list)
    with open(stem + ".jsonl") as f:
        for line in f:
            r = json.loads(line)
            if "loss" not in r:  # a validation row
                continue
            rows[r["epoch"]].append((r["loss"], r["accuracy"]))
    train = {e: (sum(l for l, _ in v) / len(v), sum(a for _, a in v) / len(v), len(v)) for e, v in rows.items()}
    val = {}
    with open(stem + ".out") as f:
        for line in f:
            m = re.match(r"epoch (\d+) validation accuracy ([0-9.]+)", line)
            if m:
                val[int(m.group(1))] = float(m.group(2))
    return train, val


def main() -> None:
    runs = [arg.split("=", 1) for arg in sys.argv[1:]]
    if not runs or any(len(r) != 2 for r in runs):
        raise SystemExit(__doc__)
    data = {name: load(stem) for name, stem in runs}
    epochs = sorted({e for train, _ in data.values() for e in train})
    head = ["epoch"] + [f"{name} {what}" for name, _ in runs for what in ("train loss", "train acc", "test acc")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for e in epochs:
        cells = [str(e)]
        for name, _ in runs:
            train, val = data[name]
            loss, acc, _ = train.get(e, (float("nan"),) * 3)
            cells += [f"{loss:.4f}", f"{acc:.2%}", f"{val[e]:.2%}" if e in val else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
