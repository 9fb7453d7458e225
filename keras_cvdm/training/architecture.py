"""The model of a new training run: the shipped presets' architectures, smaller on request.

`default_architecture` describes it (a JSON-ready dict, recorded in the preset's training
metadata) and `build_model` builds a `CVDM` from it; `_check_widths` checks a `widths`
argument and `_downsampling_factor` gives the factor that image sides must be multiples of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def default_architecture(task: str, widths: Sequence[int] | None = None) -> dict:
    """The model a new run trains: the shipped presets' recipe, or a smaller one.

    QPI: a zero-mean CVDM whose U-Net mean network (widths 32, 64, 96, 96) predicts the
    mean phase and whose denoiser (16, 32, 64) diffuses the residual scaled by 1/0.1.
    SR: a residual CVDM with a (32, 64, 128) denoiser. Both have the learned schedule.
    With `widths`, the denoiser and the mean network take these widths and the embedding,
    the schedule network and the group count shrink with the first width.

    Args:
        task (str): `"qpi"` or `"sr"`.
        widths (Sequence[int] | None): U-Net widths, or None for the presets'.

    Returns:
        dict: a JSON-ready description (recorded in the preset's training metadata).

    Examples:
        >>> default_architecture("qpi")["mean_network"]["widths"]
        [32, 64, 96, 96]
        >>> tiny = default_architecture("qpi", (8, 16))
        >>> tiny["widths"], tiny["mean_network"]["widths"], tiny["embedding_dim"]
        ([8, 16], [8, 16], 8)
    """
    qpi = task == "qpi"
    arch = {
        "target_channels": 1, "condition_channels": 2 if qpi else 1,
        "widths": [16, 32, 64] if qpi else [32, 64, 128], "attention_levels": [],
        "embedding_dim": 32, "groups": 8, "schedule": "learned",
        "schedule_filters": 32, "schedule_hidden_units": 64,
    }
    if widths is not None:
        first = int(widths[0])
        arch.update(
            widths=[int(w) for w in widths], embedding_dim=min(32, max(8, first)),
            groups=math.gcd(8, *[int(w) for w in widths]),
            schedule_filters=min(32, first), schedule_hidden_units=min(64, 2 * first),
        )
    if qpi:
        mean_widths = [32, 64, 96, 96] if widths is None else list(arch["widths"])
        arch.update(mean_network={"widths": mean_widths, "embedding_dim": arch["embedding_dim"]},
                    target_scale=0.1)
    else:
        arch.update(residual=True)
    return arch


def build_model(architecture: dict, seed: int | None = None):
    """A built, uncompiled `CVDM` from `default_architecture`'s description.

    Args:
        architecture (dict): as returned by `default_architecture`.
        seed (int | None): the model's seed (training times and noise).

    Returns:
        CVDM: the model, built for `architecture["condition_channels"]` input channels.

    Examples:
        >>> model = build_model(default_architecture("sr", (8, 16)), seed=0)
        >>> model.residual, model.condition_channels, model.downsampling_factor
        (True, 1, 2)
    """
    from keras_cvdm.layers import UNetDenoiser, UNetRegressor
    from keras_cvdm.model import CVDM
    from keras_cvdm.schedules import LearnedSchedule

    arch = architecture
    channels = arch["target_channels"]
    mean = arch.get("mean_network")
    mean_network = None
    if mean:
        mean_network = UNetRegressor(
            channels, widths=tuple(mean["widths"]), embedding_dim=mean["embedding_dim"],
            groups=arch["groups"], name="mean_network",
        )
    denoiser = UNetDenoiser(
        channels, widths=tuple(arch["widths"]), attention_levels=tuple(arch["attention_levels"]),
        embedding_dim=arch["embedding_dim"], groups=arch["groups"], name="denoiser",
    )
    schedule = LearnedSchedule(
        channels, filters=arch["schedule_filters"], hidden_units=arch["schedule_hidden_units"],
        name="schedule",
    )
    model = CVDM(
        target_channels=channels, schedule=schedule, denoiser=denoiser,
        residual=arch.get("residual", False), zero_mean=mean_network is not None,
        mean_network=mean_network, target_scale=arch.get("target_scale", 1.0), seed=seed,
    )
    model.build((None, None, None, arch["condition_channels"]))
    return model


def _downsampling_factor(architecture):
    """Image sides must be multiples of this (`CVDM.downsampling_factor`, before building)."""
    levels = [len(architecture["widths"])]
    if architecture.get("mean_network"):
        levels.append(len(architecture["mean_network"]["widths"]))
    return 2 ** (max(levels) - 1)


def _check_widths(widths):
    if widths is None:
        return None
    if isinstance(widths, str):
        try:
            widths = [int(w) for w in widths.split(",")]
        except ValueError:
            raise ValueError(
                f"`widths` must be integers such as (8, 16) or '8,16', got {widths!r}."
            ) from None
    widths = list(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1
                         for w in widths):
        raise ValueError(f"`widths` must be positive integers such as (8, 16), got {widths!r}.")
    return tuple(int(w) for w in widths)
