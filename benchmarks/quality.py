"""Does the learned schedule beat tuned fixed schedules? Quality, uncertainty, ablations.

    python benchmarks/quality.py                  # CPU scale (stated in RESULTS.md), 2 workers
    python benchmarks/quality.py --scale gpu      # the same protocol, larger images and budget
    python benchmarks/quality.py --only learned,linear,cosine   # re-score the headline runs

Protocol (identical for every method): the default U-Net denoiser at the scale's widths,
the same simulated training data, steps, batch, learning-rate schedule and training seeds;
only the noise schedule differs.

- `learned`: CVDM, the learned per-pixel schedule (α = 1e-3, two time networks tied by
  `L_β`).
- `linear`, `cosine`: the same model class with `schedule="linear" | "cosine"`, each
  trained at every point of a small grid of its endpoints on seed 0; the point with the
  lowest validation MAE (a validation set from its own seed) is then trained on the other
  seeds — the "fine-tuned" baseline.
- the classical baseline: TIE with its regularisation tuned on the validation set (QPI),
  the cubic up-sampled input (SR).
- ablations of the learned model: α ∈ {0, 1e-2}; the exact coupling τ = Φ′ (one time
  network), on the scale's `ablation_seeds` first seeds (one at CPU scale); a floor on λ
  that holds γ(1, x) ≤ e⁻⁷ (`min_lambda=7`), on every seed; samplers DDIM-20 and DDIM-50
  against the ancestral-200 used for every method (all seeds), and the 20-step samplers
  ancestral-20, DPM-Solver++(2M) (ODE) and its SDE form on the same trained models; the
  SDE form is the recommended one, reported as `learned_fast20`.

Test sets come from seeds never used in training or validation. Every score comes from
`keras_cvdm.metrics` (per image, then mean over images; mean ± std over training seeds):
MAE, PSNR, SSIM and MS-SSIM. QPI is scored in radians after removing each image's mean offset
(intensities fix phase only up to a constant); SR in the target's [-1, 1] units after a
per-image least-squares affine fit (so the up-sampled input is not penalised for its
scale). Uncertainty, from the sample std with `ddof=1` (`metrics.mean_and_std`, the
convention of `CVDM.predict_uncertainty`): Spearman ρ(std, |error|), coverage of
mean ± 2·std, a calibration curve; the schedule: γ(t) averaged over structure and
background pixels, and ρ(λ, std).

Every training run is a separate worker process (TensorFlow, one thread each) whose
result is cached in `benchmarks/results/quality_runs/`; an interrupted benchmark resumes
where it stopped. Each cached run records the std convention it was scored with
(`std_ddof`); `--only VARIANTS` re-runs the cached runs of those variants scored with
another convention (for `linear` and `cosine`, only their tuned grid point, all seeds) and
rebuilds the report, which marks the uncertainty numbers of runs still on the old
convention. Results: `benchmarks/results/quality.json`
(`{task: {method: {metric: {"mean", "std", "n"}}}}`), a section of `RESULTS.md`, and
`quality_calibration.png`, `quality_gamma.png` next to them.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from keras_cvdm.sampling import RECOMMENDED  # noqa: E402

RUNS = os.path.join(HERE, "results", "quality_runs")

SCALES = {
    # Sized for about two hours on 2 CPU cores (two workers, one thread each): 38 runs.
    # Measured: 103 min for the first 32 (3.2 min of wall time per run) on one host; the 6
    # `min_lambda` runs added later took 54 min on a host ~2× slower per step. The
    # ablations run on the first `ablation_seeds` seeds, those in EVERY_SEED on all.
    "cpu": {"image_size": 32, "steps": 1200, "batch_size": 16, "widths": [16, 32, 64],
            "val_images": 8, "test_images": 16, "num_samples": 8, "seeds": 3,
            "ablation_seeds": 1},
    "gpu": {"image_size": 128, "steps": 20000, "batch_size": 16, "widths": [32, 64, 128, 256],
            "val_images": 32, "test_images": 128, "num_samples": 16, "seeds": 3,
            "ablation_seeds": 3},
    # A minute-long pass through the whole pipeline (not a result; for checking changes).
    "smoke": {"image_size": 16, "steps": 10, "batch_size": 4, "widths": [8, 16],
              "val_images": 4, "test_images": 4, "num_samples": 2, "seeds": 2,
              "ablation_seeds": 1},
}
GRIDS = {
    "linear": {f"beta_max={b:g}": {"beta_min": 0.1, "beta_max": b} for b in (10.0, 20.0, 40.0)},
    "cosine": {f"logsnr={lo:g}..{hi:g}": {"logsnr_min": lo, "logsnr_max": hi}
               for lo, hi in ((-10.0, 10.0), (-6.0, 6.0), (-14.0, 6.0))},
}
ABLATIONS = {
    "learned_alpha=0": {"alpha": 0.0},
    "learned_alpha=1e-2": {"alpha": 1e-2},
    "learned_exact_coupling": {"coupling": "exact"},
    # γ(1, x) ≤ e⁻⁷ ≈ 10⁻³: the learned schedules otherwise end near γ(1) ≈ 0.04, short of
    # the pure noise the sampler starts from.
    "learned_min_lambda=7": {"min_lambda": 7.0},
}
# Ablations trained on every seed (not only the first `ablation_seeds`): the candidate fix
# of the learned schedule's end point is judged against the seed spread.
EVERY_SEED = ("learned_min_lambda=7",)
MAIN_SAMPLER = ("ancestral", 200)
# The recommended 20-step sampler (the presets' default), reported as `learned_fast20`.
FAST_SAMPLER = (RECOMMENDED["sampler"], RECOMMENDED["num_steps"])
EXTRA_SAMPLERS = (("ddim", 20), ("ddim", 50), ("ancestral", 20), ("dpmpp2m", 20), FAST_SAMPLER)
METRICS = ("mae", "psnr", "ssim", "ms_ssim")
UNCERTAINTY = ("spearman", "coverage_2std")
TRAIN_SEED, VAL_SEED, TEST_SEED = 3000, 4000, 5000
QPI_NOISE = 0.1
PHASE_RANGE = 3.5


# ---------------------------------------------------------------------------- the tasks


def task_data(task, scale, split, seed=0):
    """`(x, y, extra)` arrays for a task: training batches, or a validation/test set.

    `y` is in model units ([-1, 1]); `extra` holds what scoring needs (the true phase and
    raw intensities for QPI).
    """
    import numpy as np

    from keras_cvdm.data import (
        QPINormalization,
        qpi_dataset,
        qpi_test_set,
        sr_dataset,
        sr_test_set,
    )

    size = scale["image_size"]
    if split == "train":
        maker = qpi_dataset if task == "qpi" else sr_dataset
        kwargs = {"noise_std": (0.0, 0.2)} if task == "qpi" else {}
        ds = maker(batch_size=scale["batch_size"], image_size=size,
                   num_batches=scale["steps"], seed=TRAIN_SEED + seed, **kwargs)
        batches = [ds[i] for i in range(len(ds))]
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        return x, y, {}
    images = scale["val_images" if split == "val" else "test_images"]
    split_seed = VAL_SEED if split == "val" else TEST_SEED
    if task == "qpi":
        norm = QPINormalization(phase_max=PHASE_RANGE)
        i_minus, i_plus, phase = qpi_test_set(images, size, QPI_NOISE, seed=split_seed)
        x = norm.pair_to_model(i_minus, i_plus)
        y = norm.normalize_phase(phase)[..., None]
        return x, y, {"phase": phase, "i_minus": i_minus, "i_plus": i_plus}
    x, y = sr_test_set(images, size, seed=split_seed)
    return x[..., None], y[..., None], {}


def affine_fit_batch(images, targets):
    """Per-image least-squares affine fit of `images` to `targets`, and the slopes."""
    import numpy as np

    from keras_cvdm.metrics import affine_fit

    fitted, slopes = zip(*(affine_fit(image, target) for image, target in zip(images, targets)))
    return np.stack(fitted), np.asarray(slopes)


def to_scored_units(task, mean, std, y, extra):
    """Estimate, its std and the truth, `(N, H, W)`, in the units the task is scored in."""
    import numpy as np

    from keras_cvdm import metrics

    if task == "qpi":
        truth = extra["phase"]
        mean = (mean + 1.0) * PHASE_RANGE / 2.0
        mean = metrics.align_phase(mean, truth)
        return mean, std * PHASE_RANGE / 2.0, truth
    truth = y[..., 0]
    fitted, slopes = affine_fit_batch(mean, truth)
    return fitted, std * np.abs(slopes)[:, None, None], truth


def image_metrics(task, estimate, truth):
    """Mean over images of MAE, PSNR, SSIM and MS-SSIM."""
    import numpy as np

    from keras_cvdm import metrics

    data_range = PHASE_RANGE if task == "qpi" else 2.0
    return {
        "mae": float(np.mean(metrics.mae(estimate, truth))),
        "psnr": float(np.mean(metrics.psnr(estimate, truth, data_range))),
        "ssim": float(np.mean(metrics.ssim(estimate, truth, data_range))),
        "ms_ssim": float(np.mean(metrics.ms_ssim(estimate, truth, data_range))),
    }


def uncertainty_metrics(estimate, std, truth):
    """Spearman ρ(std, |error|), coverage of ±2·std and the calibration curve
    (at `keras_cvdm.metrics.CALIBRATION_LEVELS`)."""
    import numpy as np

    from keras_cvdm import metrics

    return {
        "spearman": metrics.spearman(std, np.abs(estimate - truth)),
        "coverage_2std": metrics.coverage(estimate, std, truth, k=2.0),
        "calibration": metrics.calibration_curve(estimate, std, truth),
    }


def region_gamma(model, x, y):
    """γ(t) averaged over structure (top quartile of the target) and background pixels."""
    import numpy as np
    from keras import ops

    times = np.linspace(0.0, 1.0, 21)
    upper = np.percentile(y, 75, axis=(1, 2, 3), keepdims=True)
    lower = np.percentile(y, 25, axis=(1, 2, 3), keepdims=True)
    structure, background = y >= upper, y <= lower
    curves = {"t": times.tolist(), "structure": [], "background": []}
    lam = ops.convert_to_tensor(model.schedule_map(x))  # λ(x) once, reused for every t
    for t in times:
        gamma = model.schedule.gamma(ops.full((len(x),), float(t)), lam)
        gamma = np.broadcast_to(ops.convert_to_numpy(gamma), y.shape)
        curves["structure"].append(float(gamma[structure].mean()))
        curves["background"].append(float(gamma[background].mean()))
    return curves


# ---------------------------------------------------------------------------- one run


def build_model(spec, scale):
    import keras_cvdm
    from keras_cvdm.layers import UNetDenoiser
    from keras_cvdm.schedules import CosineSchedule, LearnedSchedule, LinearSchedule

    family = spec["family"]
    settings = dict(spec.get("settings", {}))
    alpha = settings.pop("alpha", 1e-3)
    if family == "linear":
        schedule = LinearSchedule(**settings)
    elif family == "cosine":
        schedule = CosineSchedule(**settings)
    else:
        schedule = LearnedSchedule(1, **settings)
    return keras_cvdm.CVDM(
        target_channels=1, schedule=schedule, alpha=alpha,
        denoiser=UNetDenoiser(1, widths=tuple(scale["widths"]), name="denoiser"),
        residual=spec["task"] == "sr", seed=spec["seed"],
    )


def train_and_score(spec, scale, weights_path=None):
    """Train one model and score it on the validation and test sets; a `learned` run's
    weights are kept at `weights_path` (so further samplers can be scored without
    retraining)."""
    import keras

    from keras_cvdm import metrics

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(spec["seed"])
    x, y, _ = task_data(spec["task"], scale, "train", spec["seed"])
    model = build_model(spec, scale)
    lr = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=scale["steps"], alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr, global_clipnorm=1.0))
    start = time.time()
    history = model.fit(x, y, batch_size=scale["batch_size"], epochs=1, shuffle=False,
                        verbose=0).history
    result = {"spec": spec, "train_seconds": time.time() - start,
              "final_noise_loss": float(history["noise_loss"][-1]),
              "std_ddof": metrics.UNCERTAINTY_DDOF}
    if weights_path and spec["variant"] == "learned":
        model.save_weights(weights_path)
    samplers = [MAIN_SAMPLER] + (list(EXTRA_SAMPLERS) if spec["variant"] == "learned" else [])
    # Only the first seed's grid points are scored on the validation set (it picks each
    # fixed family's tuned point); every run is scored on the test set.
    splits = ("val", "test") if spec["family"] in GRIDS and spec["seed"] == 0 else ("test",)
    for split in splits:
        xs, ys, extra = task_data(spec["task"], scale, split)
        for sampler, steps in samplers if split == "test" else samplers[:1]:
            samples = model.predict_samples(
                xs, num_samples=scale["num_samples"], num_steps=steps, sampler=sampler,
                seed=spec["seed"], verbose=0,
            )[..., 0]
            mean, std = metrics.mean_and_std(samples, axis=1)
            estimate, std, truth = to_scored_units(spec["task"], mean, std, ys, extra)
            scores = image_metrics(spec["task"], estimate, truth)
            scores.update(uncertainty_metrics(estimate, std, truth))
            if spec["family"] == "learned":
                lam = model.schedule_map(xs)[..., 0]
                scores["lambda_std_spearman"] = metrics.spearman(lam, std)
            result[f"{split}/{sampler}{steps}"] = scores
        if split == "test" and spec["variant"] in ("learned", "linear", "cosine"):
            result["gamma"] = region_gamma(model, xs, ys)
    return result


# ---------------------------------------------------------------------------- orchestration


def run_name(spec):
    return f"{spec['task']}__{spec['variant']}__{spec['setting']}__seed{spec['seed']}"


def run_path(spec, scale_name):
    """Where one run's result is cached."""
    return os.path.join(RUNS, f"{scale_name}__{run_name(spec)}.json")


def std_ddof(result):
    """The ddof of the sample std a cached run was scored with (0 before it was recorded)."""
    return result.get("std_ddof", 0)


def run_specs(specs, scale_name, workers, redo=()):
    """Run the specs not cached yet (and those named in `redo`, by `run_name`), `workers`
    processes at a time; return all results.

    The wall time spent running is added to the scale's total in `RUNS` (so a resumed or
    report-only invocation still states what the whole benchmark cost).
    """
    os.makedirs(RUNS, exist_ok=True)
    started = time.time()

    def one(spec):
        path = run_path(spec, scale_name)
        if not os.path.exists(path) or run_name(spec) in redo:
            env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                       OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
                       TF_NUM_INTEROP_THREADS="1")
            cmd = [sys.executable, __file__, "--worker", json.dumps(spec), "--scale", scale_name,
                   "--output", path]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"{run_name(spec)} failed:\n{out.stderr[-3000:]}")
            print("done", run_name(spec), flush=True)
        with open(path) as f:
            return json.load(f)

    missing = [s for s in specs
               if not os.path.exists(run_path(s, scale_name)) or run_name(s) in redo]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, specs))
    if missing:
        walls = run_walls()
        walls[scale_name] = walls.get(scale_name, 0.0) + time.time() - started
        with open(os.path.join(RUNS, "wall_seconds.json"), "w") as f:
            json.dump(walls, f, indent=1)
    return results


def stale_runs(specs, scale_name, variants):
    """`run_name`s of the cached runs of `variants` scored with another std convention,
    or (the `learned` runs) missing one of `EXTRA_SAMPLERS`."""
    from keras_cvdm.metrics import UNCERTAINTY_DDOF

    names = set()
    for spec in specs:
        path = run_path(spec, scale_name)
        if spec["variant"] not in variants or not os.path.exists(path):
            continue
        with open(path) as f:
            result = json.load(f)
        missing = spec["variant"] == "learned" and any(
            f"test/{sampler}{steps}" not in result for sampler, steps in EXTRA_SAMPLERS)
        if std_ddof(result) != UNCERTAINTY_DDOF or missing:
            names.add(run_name(spec))
    return names


def run_walls():
    """`{scale: seconds}`: wall time spent training and scoring runs, over all invocations."""
    path = os.path.join(RUNS, "wall_seconds.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def specs_for(task, seeds, ablation_seeds, linear=None, cosine=None):
    """Seed-0 runs of every variant and grid point, or (given the tuned points) the rest;
    the ablations only for seeds below `ablation_seeds` (those in EVERY_SEED on every seed)."""
    specs = []

    def add(variant, family, setting, settings, seed):
        specs.append({"task": task, "variant": variant, "family": family, "setting": setting,
                      "settings": settings, "seed": seed})

    tuned = {"linear": linear, "cosine": cosine}
    for seed in seeds:
        add("learned", "learned", "default", {}, seed)
        for family, grid in GRIDS.items():
            for setting, settings in grid.items():
                if tuned[family] is None or setting == tuned[family]:
                    add(family, family, setting, settings, seed)
        for variant, settings in ABLATIONS.items():
            if seed < ablation_seeds or variant in EVERY_SEED:
                add(variant, "learned", "default", settings, seed)
    return specs


def baseline_scores(task, scale):
    """The classical baseline on the test set (TIE tuned on the validation set; up-sampling)."""
    from keras_cvdm import metrics
    from keras_cvdm.physics import tie_phase, tune_tie_regularization

    xs, ys, extra = task_data(task, scale, "test")
    if task == "qpi":
        _, _, val = task_data(task, scale, "val")
        eps, _ = tune_tie_regularization(val["i_minus"], val["i_plus"], val["phase"])
        tie = tie_phase(extra["i_minus"], extra["i_plus"], regularization=eps)
        tie = metrics.align_phase(tie, extra["phase"])
        return "tie", image_metrics(task, tie, extra["phase"]), {"regularization": float(eps)}
    fitted, _ = affine_fit_batch(xs[..., 0], ys[..., 0])
    return "upsampled", image_metrics(task, fitted, ys[..., 0]), {}


def summarise(values):
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "n": int(values.size)}


def aggregate(task, results, tuned, scale):
    """`{method: {metric: summary}}` for one task, plus the extra tables' raw material."""
    import numpy as np

    main = f"test/{MAIN_SAMPLER[0]}{MAIN_SAMPLER[1]}"
    groups = {}
    for r in results:
        spec = r["spec"]
        if spec["task"] != task:
            continue
        if spec["family"] in tuned and spec["setting"] != tuned[spec["family"]]:
            continue
        groups.setdefault(spec["variant"], []).append(r)
        if spec["variant"] == "learned":
            for sampler, steps in EXTRA_SAMPLERS:
                if f"test/{sampler}{steps}" not in r:
                    continue  # a run cached before this sampler was compared (`--only learned`)
                name = ("learned_fast20" if (sampler, steps) == FAST_SAMPLER
                        else f"learned_{sampler}{steps}")
                groups.setdefault(name, []).append({**r, main: r[f"test/{sampler}{steps}"]})
    from keras_cvdm.metrics import UNCERTAINTY_DDOF

    table = {}
    for method, runs in groups.items():
        keys = METRICS + UNCERTAINTY + (("lambda_std_spearman",) if "lambda_std_spearman"
                                       in runs[0][main] else ())
        table[method] = {k: summarise([r[main][k] for r in runs]) for k in keys}
        table[method]["train_seconds"] = summarise([r["train_seconds"] for r in runs])
        # The oldest convention among the runs (a mixed method counts as out of date).
        table[method]["std_ddof"] = min(std_ddof(r) for r in runs)
        table[method]["_stale"] = table[method]["std_ddof"] != UNCERTAINTY_DDOF
        table[method]["_calibration"] = np.mean(
            [r[main]["calibration"] for r in runs], axis=0).tolist()
        gammas = [r["gamma"] for r in runs if "gamma" in r]
        if gammas:
            table[method]["_gamma"] = gammas[0]
    name, scores, info = baseline_scores(task, scale)
    table[name] = {k: {"mean": v, "std": 0.0, "n": 1} for k, v in scores.items()}
    table[name]["_stale"] = False
    return table, info


def tune(task, results):
    """The grid point of each fixed family with the lowest validation MAE (seed 0)."""
    key = f"val/{MAIN_SAMPLER[0]}{MAIN_SAMPLER[1]}"
    tuned, grid = {}, {}
    for family in GRIDS:
        runs = [r for r in results
                if r["spec"]["task"] == task and r["spec"]["family"] == family]
        grid[family] = {r["spec"]["setting"]: r[key]["mae"] for r in runs}
        tuned[family] = min(grid[family], key=grid[family].get)
    return tuned, grid


def plots(tables, path_calibration, path_gamma):
    import matplotlib

    from keras_cvdm.metrics import CALIBRATION_LEVELS

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(tables)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
        for method in ("learned", "linear", "cosine"):
            row = tables[task][method]
            stale = f" (std ddof={row['std_ddof']})" if row["_stale"] else ""
            ax.plot(CALIBRATION_LEVELS, tables[task][method]["_calibration"], "o-",
                    label=method + stale)
        ax.set(title=f"{task}: calibration", xlabel="expected coverage (Gaussian interval)",
               ylabel="observed coverage")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path_calibration, dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method, style in (("learned", "-"), ("linear", ":"), ("cosine", "-.")):
            g = tables[task][method].get("_gamma")
            if g is None:
                continue
            ax.plot(g["t"], g["structure"], style, label=f"{method}: structure")
            if method == "learned":
                ax.plot(g["t"], g["background"], "--", label="learned: background")
        ax.set(title=f"{task}: region-averaged γ(t)", xlabel="t", ylabel="γ", yscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_gamma, dpi=100)
    plt.close(fig)


def fmt(summary, digits=3):
    """`mean ± std` over seeds; the mean alone for one value (a deterministic baseline or a
    one-seed ablation)."""
    if summary["n"] == 1:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


def comparison(table, method, other):
    """One sentence: `method` against `other` in MAE, judged against the seed spread."""
    a, b = table[method], table[other]
    d = a["mae"]["mean"] - b["mae"]["mean"]
    spread = (a["mae"]["std"] ** 2 + b["mae"]["std"] ** 2) ** 0.5
    verdict = ("within the spread" if abs(d) <= spread else
               f"{method} better" if d < 0 else f"{method} worse")
    return (f"{method} vs {other}: MAE {d:+.4f} ({100 * d / b['mae']['mean']:+.1f}%; negative "
            f"= {method} better; {verdict}: seed spread ±{spread:.4f}), "
            f"PSNR {a['psnr']['mean'] - b['psnr']['mean']:+.2f} dB.")


def fast_sampler_sentence(table):
    """What the 20-step sampler gives against ancestral-200 on the same models."""
    fast, full = table["learned_fast20"], table["learned"]
    ratio = fast["mae"]["mean"] / full["mae"]["mean"]
    cover = fast["coverage_2std"]["mean"]
    verdict = ("meets" if ratio <= 1.05 and 0.90 <= cover <= 0.98 else "misses")
    return (f"learned_fast20 (DPM-Solver++(2M) SDE, {FAST_SAMPLER[1]} denoiser calls) vs "
            f"learned (ancestral, {MAIN_SAMPLER[1]} calls): MAE ratio {ratio:.3f}, ±2σ "
            f"coverage {cover:.2f} vs {full['coverage_2std']['mean']:.2f}; it {verdict} the "
            "bar of MAE ≤ 1.05× and coverage 0.90–0.98 at a tenth of the sampling cost.")


def markdown(tables, grids, tuned, infos, scale_name, scale):
    from report import machine

    stale = {task: [m for m, row in table.items() if row["_stale"]]
             for task, table in tables.items()}
    headline = [m for m in ("learned", "linear", "cosine")
                if any(m in methods for methods in stale.values())]
    ablations = sorted({m for methods in stale.values() for m in methods
                        if m in ABLATIONS})

    lines = [
        "## Learned vs tuned fixed schedules (`benchmarks/quality.py`)\n",
        f"Scale `{scale_name}`: {scale['image_size']}×{scale['image_size']} images, U-Net "
        f"widths {scale['widths']}, {scale['steps']} training steps of batch "
        f"{scale['batch_size']} (same data, seeds and learning rate for every method), "
        f"{scale['seeds']} training seeds ({scale['ablation_seeds']} for the α and coupling "
        f"ablations; all for `min_lambda`), {scale['val_images']} validation and "
        f"{scale['test_images']} test images, "
        f"{scale['num_samples']} samples per image, ancestral sampler with 200 steps (rows "
        "`learned_<sampler><steps>` and `learned_fast20`, DPM-Solver++(2M) SDE with 20 steps: "
        "the same trained `learned` models, sampled otherwise). "
        f"TensorFlow, {machine()}; wall time of the runs "
        f"{run_walls().get(scale_name, 0.0) / 60:.0f} min. QPI test noise std "
        f"{QPI_NOISE}; metrics mean ± std over training seeds (baselines are deterministic). "
        "`python benchmarks/quality.py --scale gpu` runs the same protocol larger.\n",
    ]
    for task, table in tables.items():
        units = "rad" if task == "qpi" else "[-1, 1] units, affine-fitted"
        lines += [
            f"**{task}** (MAE in {units}; tuned grid points: linear `{tuned[task]['linear']}`, "
            f"cosine `{tuned[task]['cosine']}`)\n",
            "| method | MAE | PSNR (dB) | SSIM | MS-SSIM | ρ(std, error) | coverage ±2σ |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, row in table.items():
            unc = [fmt(row[k], 2) if k in row else "—" for k in UNCERTAINTY]
            if row["_stale"]:
                unc[1] += " †"
            lines.append(
                f"| {method} | {fmt(row['mae'])} | {fmt(row['psnr'], 2)} | {fmt(row['ssim'])} "
                f"| {fmt(row['ms_ssim'])} | {unc[0]} | {unc[1]} |"
            )
        learned = table["learned"]
        lines.append("")
        for method, other in [("learned", "linear"), ("learned", "cosine")] + [
                (variant, "learned") for variant in EVERY_SEED if variant in table]:
            lines.append(comparison(table, method, other))
        if "learned_fast20" in table:
            lines.append(fast_sampler_sentence(table))
        ends = []
        for method in ("learned", "linear", "cosine"):
            g = table[method].get("_gamma")
            if g is None:
                continue
            end = f"{method} {g['structure'][-1]:.3f}"
            if method == "learned":
                end += f" (structure) / {g['background'][-1]:.3f} (background)"
            ends.append(end)
        if ends:
            lines.append("Signal fraction left at t = 1, γ(1) (first seed; sampling starts from "
                         f"pure noise, γ = 0): {'; '.join(ends)}.")
        if "lambda_std_spearman" in learned:
            rho = fmt(learned["lambda_std_spearman"], 2)
            lines.append(f"ρ(λ(x), std) for the learned model: {rho}.")
        lines.append("\nValidation MAE of the grid (seed 0): " + "; ".join(
            f"{family} " + ", ".join(f"`{k}` {v:.4f}" for k, v in grid.items())
            for family, grid in grids[task].items()) + ".")
        if infos[task]:
            lines.append(f"Baseline settings: {infos[task]}.")
        lines.append("")
    if headline or ablations:
        rerun = [f"`python benchmarks/quality.py --scale {scale_name} --only "
                 f"{','.join(names)}`" for names in (headline, ablations) if names]
        lines.append(
            "† **Out of date**: scored with the sample std over the posterior samples at "
            "`ddof=0`, not the package's `ddof=1` (`CVDM.predict_uncertainty`), so the "
            "coverage (and the calibration curve of the figure) is understated; Spearman ρ "
            "does not depend on it. Re-scored by " + " and ".join(rerun) + ".\n")
    lines.append("![calibration](results/quality_calibration.png) "
                 "![gamma](results/quality_gamma.png)")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--tasks", nargs="+", choices=["qpi", "sr"], default=["qpi", "sr"])
    parser.add_argument("--workers", type=int, default=2, help="training runs in parallel")
    parser.add_argument(
        "--only", type=lambda text: [v for v in text.split(",") if v],
        help="comma-separated variants (e.g. learned,linear,cosine) whose cached runs "
             "scored with another std convention (or, for learned, without one of the "
             "compared samplers) are re-run (linear/cosine: the tuned "
             "grid point, every seed); the report is rebuilt from all cached runs",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    scale = SCALES[args.scale]
    if args.worker:
        weights = args.output.removesuffix(".json") + ".weights.h5"
        result = train_and_score(json.loads(args.worker), scale, weights)
        with open(args.output + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(args.output + ".tmp", args.output)
        return
    from report import RESULTS, write_section

    variants = {"learned", *GRIDS, *ABLATIONS}
    unknown = sorted(set(args.only or ()) - variants)
    if unknown:
        parser.error(f"--only: unknown variants {unknown}; choose from {sorted(variants)}.")
    seeds = list(range(scale["seeds"]))
    ablation_seeds = scale["ablation_seeds"]
    first = [s for task in args.tasks for s in specs_for(task, seeds[:1], ablation_seeds)]
    results = run_specs(first, args.scale, args.workers)
    tuned, grids = {}, {}
    for task in args.tasks:
        tuned[task], grids[task] = tune(task, results)
    # Every run of the chosen variants the report uses: their tuned points, all seeds.
    chosen = [s for task in args.tasks
              for s in specs_for(task, seeds, ablation_seeds, tuned[task]["linear"],
                                 tuned[task]["cosine"])]
    redo = stale_runs(chosen, args.scale, set(args.only or ()))
    if redo:
        print(f"re-running {len(redo)} runs: {sorted(redo)}", flush=True)
        fresh = {run_name(r["spec"]): r
                 for r in run_specs([s for s in chosen if run_name(s) in redo], args.scale,
                                    args.workers, redo)}
        results = [fresh.get(run_name(r["spec"]), r) for r in results]
    rest = [s for task in args.tasks
            for s in specs_for(task, seeds[1:], ablation_seeds, tuned[task]["linear"],
                               tuned[task]["cosine"])]
    results += run_specs(rest, args.scale, args.workers)
    tables, infos = {}, {}
    for task in args.tasks:
        tables[task], infos[task] = aggregate(task, results, tuned[task], scale)
    plots(tables, os.path.join(RESULTS, "quality_calibration.png"),
          os.path.join(RESULTS, "quality_gamma.png"))
    payload = {task: {m: {k: v for k, v in row.items() if not k.startswith("_")}
                      for m, row in table.items()} for task, table in tables.items()}
    write_section("quality", markdown(tables, grids, tuned, infos, args.scale, scale), payload)


if __name__ == "__main__":
    main()
