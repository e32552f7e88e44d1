"""Training peak memory (RSS) on generated cohorts of growing size: training streams its cases, so the peak
should not grow with the cohort. Each cohort is trained in a fresh process for a fixed number of optimiser steps.

    python -m neurofusion.data generate --task cardio --n 2000 --splits train,val --out /tmp/cardio2000
    python -m neurofusion.data generate --task cardio --n 8000 --splits train,val --out /tmp/cardio8000
    python benchmarks/train_memory.py --data /tmp/cardio2000 /tmp/cardio8000 --steps 20 \
        --out benchmarks/results/train_memory.json

The peak is ``resource.getrusage`` ``ru_maxrss`` of the training process (and, with --num-workers, of the
largest data worker). Everything before the first step (reading the notes for the tokenizer, the pass that
fits the tabular normalisers over the whole train split) is inside the measured process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Enough(Exception):
    """Raised by the step counter: the measured number of steps is done."""


def measure(data: str, config: str, steps: int, num_workers: int, batch_size: int) -> dict:
    """Train ``config`` on ``data`` for ``steps`` optimiser steps in this process; its peak RSS."""
    import torch

    from neurofusion.config import load_experiment
    from neurofusion.data.timed import open_cohort
    from neurofusion.train import fit

    torch.set_num_threads(1)
    done = [0]
    step = torch.optim.Adam.step

    def counted(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        done[0] += 1
        if done[0] >= steps:
            raise _Enough
        return result

    torch.optim.Adam.step = counted
    experiment = load_experiment(config)
    train = experiment.train
    train.num_workers, train.batch_size, train.device, train.max_minutes = num_workers, batch_size, "cpu", None
    cohort = open_cohort(data)
    start = time.perf_counter()
    try:
        fit(cohort, experiment.model, train, progress=False)
    except _Enough:
        pass
    seconds = time.perf_counter() - start
    if done[0] < steps:
        raise SystemExit(f"{data}: training stopped after {done[0]} steps, fewer than --steps {steps}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"data": data, "train_cases": len(cohort.ids("train")), "val_cases": len(cohort.ids("val")),
            "steps": done[0], "batch_size": batch_size, "num_workers": num_workers,
            "peak_rss_mib": round(own, 1), "largest_worker_peak_rss_mib": round(workers, 1) if num_workers else None,
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="generated cohorts (train and val splits)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cardio_demo.yaml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--out", help="JSON file to write the rows to")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if args.child:
        print(json.dumps(measure(args.data[0], args.config, args.steps, args.num_workers, args.batch_size)))
        return 0
    rows = []
    for data in args.data:
        command = [sys.executable, __file__, "--child", "--data", data, "--config", args.config, "--steps",
                   str(args.steps), "--batch-size", str(args.batch_size), "--num-workers", str(args.num_workers)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    if args.out:
        result = {"rows": rows, "command": " ".join(["python benchmarks/train_memory.py"] + (argv or sys.argv[1:])),
                  "machine": {"python": platform.python_version(), "processor": platform.processor() or "unknown"}}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
