"""Peak memory and time of tiled `keras-cvdm predict` as the image grows.

    python benchmarks/tiling.py                          # TensorFlow, 256² … 2048²
    python benchmarks/tiling.py --backend jax --sizes 256 512

For each size a simulated QPI pair (the package's phantoms and optics, float32 TIFFs) is
reconstructed by the `keras-cvdm predict` command in a fresh process with the `qpi`
preset, `--tile 128 --overlap 32`. The peak resident memory of that process
(`os.wait4`'s `ru_maxrss`) and its wall time are recorded; a whole-image run (no
`--tile`) is measured too at the sizes where it is affordable, as the contrast. Memory
should stay flat as the image grows (bounded by the tile and the batch, plus the output
maps), and time should grow linearly with the number of pixels (with tiles, pixels ×
the overlap's redundancy).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from report import machine, write_section  # noqa: E402

TILE, OVERLAP = 128, 32


def write_inputs(folder, size, seed=0):
    """A simulated defocus pair of one `size`² field, as float32 TIFFs; returns paths."""
    import numpy as np

    from keras_cvdm import io, physics
    from keras_cvdm.data import phantoms

    rng = np.random.default_rng(seed)
    phase = phantoms.cells(size, rng) * physics.PAPER_PHASE_MAX
    i_minus, i_plus = physics.defocus_pair(phase[None])
    paths = []
    for name, image in (("minus.tif", i_minus[0]), ("plus.tif", i_plus[0])):
        noisy = image * (1 + 0.05 * rng.standard_normal(image.shape))
        paths.append(str(io.write_image(os.path.join(folder, name),
                                         noisy.astype(np.float32))))
    return paths


def run_predict(backend, paths, output, tile, samples, steps, threads):
    """One `keras-cvdm predict` process: (seconds, peak RSS in MiB)."""
    cmd = [sys.executable, "-m", "keras_cvdm.cli", "predict", "--preset", "qpi",
           "--input", *paths, "--output", output, "--samples", str(samples),
           "--steps", str(steps), "--seed", "0", "--overwrite"]
    if tile:
        cmd += ["--tile", str(TILE), "--overlap", str(OVERLAP)]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               OMP_NUM_THREADS=str(threads))
    start = time.time()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.time() - start
    if status:
        raise RuntimeError(f"predict failed ({' '.join(cmd)}):\n"
                           f"{process.stderr.read().decode()[-3000:]}")
    process.stderr.close()
    return seconds, usage.ru_maxrss / 1024.0


def render(payload):
    """The RESULTS.md section for a payload of rows."""
    from keras_cvdm.tiling import tile_grid

    rows, tile, overlap = payload["rows"], payload["tile"], payload["overlap"]
    for r in rows:
        r["tiles"] = len(tile_grid(r["size"], r["size"], tile, overlap)) if r["tiled"] else 1
    tiled = [r for r in rows if r["tiled"]]
    base, largest = tiled[0], tiled[-1]
    lines = [
        "## Tiled prediction (`benchmarks/tiling.py`)",
        "",
        f"`keras-cvdm predict --preset qpi --tile {tile} --overlap {overlap} --samples "
        f"{payload['samples']} --steps {payload['steps']}` on one simulated field per size, each "
        f"in a fresh process ({payload['backend']}, {payload['threads']} threads; "
        f"{payload['machine']}). Peak memory is the process's resident high-water mark (model, "
        "framework and output maps included); time includes start-up and loading the preset. "
        "The marginal time per tile is the time added from the previous tiled size divided by "
        "the tiles added: constant when time is linear in the tiles, and the tiles grow as "
        "the pixels.",
        "",
        "| size | tiled | tiles | seconds | marginal s/tile | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    previous = None
    for r in rows:
        marginal = ""
        if r["tiled"] and previous is not None:
            added = r["tiles"] - previous["tiles"]
            marginal = f"{(r['seconds'] - previous['seconds']) / added:.2f}"
        lines.append(
            f"| {r['size']}² | {'yes' if r['tiled'] else 'no (whole image)'} | {r['tiles']} | "
            f"{r['seconds']} | {marginal} | {r['peak_rss_mib']} |"
        )
        previous = r if r["tiled"] else previous
    lines += [
        "",
        f"From {base['size']}² to {largest['size']}² ({(largest['size'] / base['size']) ** 2:.0f}× "
        f"the pixels) peak memory goes from {base['peak_rss_mib']} to "
        f"{largest['peak_rss_mib']} MiB ({largest['peak_rss_mib'] / base['peak_rss_mib']:.2f}×); "
        "without tiles it grows with the image.",
    ]
    if payload.get("note"):
        lines += ["", payload["note"]]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--whole-sizes", type=int, nargs="*", default=[256, 512],
                        help="sizes also run without tiling (the contrast)")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = os.path.join(tmp, str(size))
            os.makedirs(folder)
            paths = write_inputs(folder, size)
            for tile in (True, False):
                if not tile and size not in args.whole_sizes:
                    continue
                seconds, peak = run_predict(args.backend, paths, os.path.join(folder, "out"),
                                            tile, args.samples, args.steps, args.threads)
                row = {"size": size, "tiled": tile, "seconds": round(seconds, 1),
                       "peak_rss_mib": round(peak)}
                rows.append(row)
                print(row, flush=True)
    payload = {"machine": machine(), "backend": args.backend, "tile": TILE,
               "overlap": OVERLAP, "samples": args.samples, "steps": args.steps,
               "threads": args.threads, "rows": rows}
    write_section("tiling", render(payload), payload)


if __name__ == "__main__":
    main()
