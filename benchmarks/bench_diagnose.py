"""Wall time of the gradient-masking report (task: diagnose) on one MNIST model at 200 samples.

    python benchmarks/bench_diagnose.py [MODEL_FOLDER] [--threads N]

Runs configs/robustness/diagnose_mnist_a.yaml on one model (default models/mnist_a-1bit) and prints the
time of the whole report and of each of its attacks' share as logged. Issue 11's budget: under 10 minutes
on a 2-core CPU. Report the load of the machine beside the number (timings are not asserted in tests).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    args = sys.argv[1:]
    model = next((a for a in args if not a.startswith("--")), "models/mnist_a-1bit")
    threads = args[args.index("--threads") + 1] if "--threads" in args else None
    out = tempfile.mkdtemp(prefix="bench-diagnose-")
    cmd = [sys.executable, "-m", "annt", str(ROOT / "configs/robustness/diagnose_mnist_a.yaml"),
           "--set", f"diagnose.models=[{ROOT / model}]", "--set", f"output_dir={out}"]
    if threads:
        cmd += ["--threads", threads]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    res = json.loads(next(Path(out).glob("*-diagnose-*/results.json")).read_text())
    m = next(iter(res["models"].values()))
    print(f"diagnose {model}: {m['elapsed_s']:.0f} s for the report ({wall:.0f} s with start-up), "
          f"{res['samples']} samples, load average at start {load:.1f} on {os.cpu_count()} cores; budget 600 s")
    print(f"worst case {m['worst_case_accuracy']:.3f}; verdicts:")
    for c in m["checks"]:
        print(f"  {c['name']}: {c['verdict']}")


if __name__ == "__main__":
    main()
