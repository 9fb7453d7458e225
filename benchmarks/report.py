"""Assemble benchmarks/RESULTS.md from the per-benchmark tables in benchmarks/results/."""

import os
import platform

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ORDER = ["train_speed", "sample_speed", "tie_baseline"]


def machine():
    """A one-line description of the machine a benchmark ran on."""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, Python {platform.python_version()}"


def write_section(name, markdown, payload):
    """Write results/<name>.md and results/<name>.json, then rebuild RESULTS.md."""
    import json

    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(markdown.rstrip() + "\n")
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=2)
    build()


def build():
    names = [n for n in ORDER if os.path.exists(os.path.join(RESULTS, f"{n}.md"))]
    parts = [
        "# Benchmark results\n",
        "Produced by the scripts in `benchmarks/`; each section names its command, machine and "
        "backend. Machine-readable numbers are in `benchmarks/results/*.json`.\n",
    ]
    for name in names:
        with open(os.path.join(RESULTS, f"{name}.md")) as f:
            parts.append(f.read().rstrip() + "\n")
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    build()
