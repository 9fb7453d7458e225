"""Property-based tests of the public entry points' contract.

Over shapes, dtypes, value ranges and parameters, every call of `CVDM.predict_samples`,
`CVDM.schedule_map`, `qpi.reconstruct`, `sr.reconstruct` and the `io` readers and writers
either returns finite output of the documented shape (files: the array written) or
raises `ValueError` / `TypeError` with a message. Each case is also classified by a
small model of the documented rules: input those rules accept must be computed, input
they refuse must be refused; anything else is a failure (another exception, NaN output,
a wrong shape).

Cost: the models are tiny and module-scoped and sample with one DDIM step. The shapes
that reach the network come from a few small images (the compiled sampler is cached
per shape, and a JAX compile costs about a second); arbitrary shapes, ranks and sizes
0-17 are drawn for the input that must be refused. Hypothesis is derandomised (the same
examples on every run) and keeps no example database.
"""

import math
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from keras_cvdm import io, qpi, sr
from keras_cvdm.data import QPINormalization, SRNormalization
from tests.conftest import tiny_model

ACCEPT, REFUSE, EITHER = "accept", "refuse", "either"

#: Bounds of the documented rules (see `keras_cvdm.validation`).
MAX_MODEL_MAGNITUDE = 1e4
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Magnitudes every entry point must handle (far above any measurement's unit).
HUGE = 1e30

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])
MODEL_SETTINGS = settings(max_examples=25, **SETTINGS)
IO_SETTINGS = settings(max_examples=60, **SETTINGS)

# Hypothesis favours the first of several choices: ordinary values come first.
DTYPES = ("float32", "float64", "uint8", "uint16", "int32", "float16", "bool", "complex64")
REAL_DTYPES = DTYPES[:6]
#: Magnitudes of generated arrays, and values planted into them (integers saturate to
#: their dtype's range).
SCALES = (1.0, 1e-3, 0.5, 255.0, 1e4, 1e30)
SPECIAL_VALUES = (0.0, -1.0, 1e4, -1e4, 1.0001e4, 65504.0, 2.0**31, 1e30, -1e30, 3.0e38,
                  -3.0e38, math.nan, math.inf, -math.inf)

QPI_METADATA = {
    "task": "qpi",
    "normalization": QPINormalization().to_dict(),
    "sampling": {"sampler": "ddim", "num_steps": 1},
    "forward_model": {"wavelength_um": 0.5, "pixel_size_um": 0.2, "defocus_um": 1.0},
}
SR_METADATA = {
    "task": "sr",
    "normalization": SRNormalization().to_dict(),
    "sampling": {"sampler": "ddim", "num_steps": 1},
    "forward_model": {"factor": 2},
}


@pytest.fixture(scope="module")
def qpi_model():
    """A tiny two-channel model with QPI metadata; also serves `predict_samples`."""
    model = tiny_model(metadata=QPI_METADATA)
    model.build((None, 8, 8, 2))
    return model


@pytest.fixture(scope="module")
def sr_model():
    model = tiny_model(residual=True, metadata=SR_METADATA)
    model.build((None, 8, 8, 1))
    return model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


def fresh_path(folder, suffix):
    return folder / f"{uuid.uuid4().hex}{suffix}"


# ---------------------------------------------------------------------- generation

def cast(values, dtype):
    """float64 `values` in `dtype`: integers round and saturate, NaN becomes 0."""
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"):
        if dtype == np.bool_:
            return values > 0
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = np.nan_to_num(values, nan=0.0, posinf=info.max, neginf=info.min)
            return np.clip(np.round(values), info.min, info.max).astype(dtype)
        if dtype.kind == "c":
            return (values + 0.5j * np.flip(values)).astype(dtype)
        return values.astype(dtype)


def _bounded(shape):
    shape = tuple(shape)
    return shape if math.prod(shape) <= 17**3 else tuple(min(side, 4) for side in shape)


def any_shapes(min_rank=0, max_rank=5):
    """Shapes of rank `min_rank`-`max_rank` and sides 0-17 (4 when that is too many)."""
    return st.lists(st.integers(0, 17), min_size=min_rank, max_size=max_rank).map(_bounded)


@st.composite
def hostile_arrays(draw, shapes=None, dtypes=DTYPES, scales=SCALES,
                   offsets=(0.0, 0.5, -0.5, 1.0), specials=3):
    """Arrays of `shapes` (default: any) and `dtypes`, `scale · (offset + U(-1, 1))`,
    with up to `specials` zeros, negatives, huge values, NaN and Inf planted at random
    places."""
    shape = draw(any_shapes() if shapes is None else shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from(scales))
    offset = draw(st.sampled_from(offsets))
    values = scale * (offset + rng.uniform(-1.0, 1.0, size=shape))
    flat = values.reshape(-1)
    for value in draw(st.lists(st.sampled_from(SPECIAL_VALUES), max_size=specials)):
        if flat.size:
            flat[rng.integers(flat.size)] = value
    return cast(values, draw(st.sampled_from(dtypes)))


def real(array):
    return array.dtype.kind in "iuf"


def finite_within(array, bound):
    values = array.astype(np.float64)
    return bool(np.all(np.isfinite(values)) and (not values.size or np.abs(values).max() <= bound))


def parameter(valid, invalid=()):
    """A parameter's documented-valid and invalid values."""
    return tuple(valid), tuple(invalid)


SEEDS = parameter(
    (None, 0, 7, 5.0, np.int64(3), np.uint64(2**64 - 1), 2**63 - 1, 2**100),
    (-1, 1.5, True, "0", math.nan, math.inf, [1]),
)
COUNT_INVALID = (0, -1, 1.5, 2.7, True, False, "2", math.nan, math.inf, [2])


@st.composite
def parameters(draw, spec):
    """`(kwargs, valid)`: every parameter valid (two thirds of the cases), or exactly one
    of them invalid."""
    breakable = [name for name, (_, invalid) in spec.items() if invalid]
    broken = draw(st.sampled_from([None] * 2 * len(breakable) + breakable))
    kwargs = {name: draw(st.sampled_from(invalid if name == broken else valid))
              for name, (valid, invalid) in spec.items()}
    return kwargs, broken is None


def check_contract(verdict, call, check_output):
    """Run `call`: a clear refusal or a checked result, as `verdict` demands."""
    try:
        result = call()
    except (ValueError, TypeError) as error:
        event(f"{verdict}: refused")
        assert str(error).strip(), f"{type(error).__name__} without a message"
        assert verdict != ACCEPT, f"refused input the documented rules accept: {error!r}"
        return None
    event(f"{verdict}: computed")
    assert verdict != REFUSE, "accepted input the documented rules refuse"
    check_output(result)
    return result


# ---------------------------------------------------------------------- the model

#: Condition images that reach the network (few shapes: each compiles a sampler).
CONDITION_SHAPES = ((1, 8, 8, 2), (2, 5, 3, 2), (1, 1, 1, 2), (8, 8, 2), (5, 3, 2))


def _plausible_condition(shape):
    return len(shape) in (3, 4) and shape[-1] == 2 and 0 not in shape


_plausible = hostile_arrays(st.sampled_from(CONDITION_SHAPES), REAL_DTYPES,
                            (1.0, 1e-3, 255.0, 4e3), specials=0)
conditions = st.one_of(
    _plausible,
    _plausible,
    hostile_arrays(st.sampled_from(CONDITION_SHAPES)),
    hostile_arrays(any_shapes().filter(lambda s: not _plausible_condition(s))),
)


def condition_verdict(x, ranks=(3, 4)):
    """The documented rules of a model's condition `x` (`CVDM.predict_samples`)."""
    if not real(x) or x.ndim not in ranks or x.shape[-1] != 2 or 0 in x.shape:
        return REFUSE
    return ACCEPT if finite_within(x, MAX_MODEL_MAGNITUDE) else REFUSE


# Valid counts give batches of 2 or 4 (image, sample) pairs, as in the QPI test below,
# so that both tests share the compiled samplers.
PREDICT_SPEC = {
    "num_samples": parameter((2, 2.0, np.int64(2)), COUNT_INVALID + (None,)),
    "num_steps": parameter((1, 1.0, np.int32(1)), COUNT_INVALID),
    "batch_size": parameter((None, 2.0, 1e30), COUNT_INVALID),
    "sampler": parameter(("ddim",), ("DDIM", "euler", None, 3)),
    "seed": SEEDS,
}


PREDICT_DEFAULTS = {"num_samples": 2, "num_steps": 1, "batch_size": None, "sampler": "ddim",
                    "seed": 0}


@MODEL_SETTINGS
@given(x=conditions, params=parameters(PREDICT_SPEC))
@example(x=np.full((1, 8, 8, 2), MAX_MODEL_MAGNITUDE), params=(PREDICT_DEFAULTS, True))
@example(x=np.full((1, 8, 8, 2), np.iinfo(np.int32).min, np.int32),  # |min| overflows int32
         params=(PREDICT_DEFAULTS, True))
@example(x=np.full((1, 8, 8, 2), 1e39), params=(PREDICT_DEFAULTS, True))  # Inf in float32
def test_predict_samples_returns_bounded_samples_or_refuses(qpi_model, x, params):
    kwargs, valid = params
    verdict = condition_verdict(x) if valid else REFUSE

    def check(samples):
        num_samples = int(kwargs["num_samples"])
        expected = (num_samples,) + x.shape[-3:-1] + (1,)
        if x.ndim == 4:
            expected = (x.shape[0],) + expected
        assert samples.shape == expected
        assert np.all(np.isfinite(samples))
        # A plain target model clips its clean-image prediction to [-1, 1].
        assert np.all(np.abs(samples) <= 1.0 + 1e-6)

    check_contract(verdict, lambda: qpi_model.predict_samples(x, verbose=0, **kwargs), check)


@MODEL_SETTINGS
@given(x=conditions)
def test_schedule_map_is_a_positive_rate_map_or_refuses(qpi_model, x):
    verdict = condition_verdict(x, ranks=(4,))

    def check(lam):
        assert lam.shape == x.shape[:3] + (1,)
        assert np.all(np.isfinite(lam))
        # λ = softplus(g(x)) + λ_min: every pixel is noised.
        assert np.all(lam >= qpi_model.schedule.min_lambda * (1 - 1e-6))

    check_contract(verdict, lambda: qpi_model.schedule_map(x), check)


# ---------------------------------------------------------------------- qpi

#: Intensity stacks that reach the network.
QPI_SHAPES = ((8, 8), (5, 3), (1, 1), (2, 8, 8), (1, 5, 3))


@st.composite
def defocus_pairs(draw):
    """`(i_minus, i_plus)`: plausible intensities in any real dtype (some with special
    values planted, some with shapes that differ), or hostile arrays."""
    kind = draw(st.sampled_from(("plausible", "plausible", "planted", "hostile",
                                 "mismatched")))
    if kind == "hostile":
        shapes = st.one_of(
            st.sampled_from(QPI_SHAPES + ((8, 8, 3), (6, 6, 4))),
            any_shapes().filter(lambda s: len(s) not in (2, 3) or 0 in s),
        )
        shape = draw(shapes)
        return tuple(draw(hostile_arrays(st.just(shape))) for _ in range(2))
    shape = draw(st.sampled_from(QPI_SHAPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level = draw(st.sampled_from((1.0, 200.0, 1e-3, 6e4, 1e30)))
    contrast = draw(st.sampled_from((0.1, 0.5, 0.0, 0.99)))
    dtype = draw(st.sampled_from(REAL_DTYPES))
    pair = [cast(level * (1 + contrast * rng.uniform(-1, 1, shape)), dtype) for _ in range(2)]
    if kind == "mismatched":
        pair[1] = pair[1][..., :-1] if pair[1].shape[-1] > 1 else pair[1][None]
    for value in draw(st.lists(st.sampled_from(SPECIAL_VALUES), min_size=1, max_size=2)
                      if kind == "planted" else st.just(())):
        plane = pair[draw(st.integers(0, 1))].reshape(-1)
        plane[rng.integers(plane.size)] = cast(np.array(value), plane.dtype)
    return tuple(pair)


def qpi_verdict(i_minus, i_plus):
    """The documented rules of a defocus pair (`qpi.reconstruct`)."""
    if not (real(i_minus) and real(i_plus)) or i_minus.shape != i_plus.shape:
        return REFUSE
    shape = i_minus.shape
    if len(shape) not in (2, 3) or 0 in shape:
        return REFUSE
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4:
        return REFUSE  # a colour image
    if not (finite_within(i_minus, FLOAT32_MAX) and finite_within(i_plus, FLOAT32_MAX)):
        return REFUSE
    verdict = ACCEPT
    stacks = [np.asarray(a, np.float64).reshape((-1,) + shape[-2:]) for a in (i_minus, i_plus)]
    scale = QPINormalization().intensity_scale
    for minus, plus in zip(*stacks):
        mean = 0.5 * (minus.mean() + plus.mean())
        if not mean > 0 or min(minus.min(), plus.min()) < -mean:
            return REFUSE  # no light, or an offset subtracted
        if max(np.abs(minus / mean - 1).max(), np.abs(plus / mean - 1).max()) / scale > (
                MAX_MODEL_MAGNITUDE):
            return REFUSE  # a contrast no normalised measurement has
        spreads = sorted((np.ptp(minus), np.ptp(plus)))
        if spreads[0] == 0 and spreads[1] > 1e-3 * mean:
            return REFUSE  # one blank plane next to one that varies
        if spreads[0] <= 1e-6 * mean < spreads[1] or min(minus.min(), plus.min()) < 0:
            verdict = EITHER  # nearly blank, or negative noise: the thresholds decide
    return verdict


QPI_SPEC = {
    "num_samples": parameter((2, 2.0, np.int64(2)), COUNT_INVALID + (1, None)),
    "num_steps": parameter((None, 1, 1.0), COUNT_INVALID),
    "sampler": parameter((None, "ddim"), ("DDIM", "euler", 3)),
    "batch_size": parameter((None, 2, 2.0), COUNT_INVALID),
    "seed": SEEDS,
    "tiling": parameter(({}, {"tile": 8}, {"tile": 8, "overlap": 2}),
                        ({"tile": 0}, {"tile": -3}, {"tile": 2.5}, {"tile": True},
                         {"tile": "8"}, {"overlap": 2}, {"tile": 8, "overlap": 8},
                         {"tile": 8, "overlap": -1}, {"tile": 8, "overlap": 1.5})),
    "optics": parameter(({}, {"wavelength": 0.5}, {"defocus": 1.0, "pixel_size": 0.2}),
                        ({"wavelength": 0.6}, {"wavelength": -0.5}, {"defocus": math.nan},
                         {"pixel_size": True}, {"wavelength": "0.5"}, {"defocus": 0.0})),
    "return_samples": parameter((False, True)),
}


QPI_DEFAULTS = {"num_samples": 2, "num_steps": None, "sampler": None, "batch_size": None,
                "seed": 0, "tiling": {}, "optics": {}, "return_samples": False}


@MODEL_SETTINGS
@given(pair=defocus_pairs(), params=parameters(QPI_SPEC))
@example(pair=(np.ones((8, 8)), np.ones((1, 8, 8))), params=(QPI_DEFAULTS, True))
@example(pair=(np.full((8, 8), 3e38, np.float32), np.full((8, 8), 3.3e38, np.float32)),
         params=(QPI_DEFAULTS, True))
def test_qpi_reconstruct_returns_a_phase_map_or_refuses(qpi_model, pair, params):
    i_minus, i_plus = pair
    kwargs, valid = params
    kwargs = dict(kwargs)
    kwargs.update(**kwargs.pop("tiling"), **kwargs.pop("optics"))
    verdict = qpi_verdict(i_minus, i_plus) if valid else REFUSE
    norm = QPINormalization()

    def check(result):
        assert len(result) == (3 if kwargs["return_samples"] else 2)
        phase, std = result[:2]
        assert phase.shape == std.shape == i_minus.shape
        for array in result:
            assert np.all(np.isfinite(array))
        assert np.all(std >= 0)
        # The samples are clipped in model units, so the phase stays in the trained range
        # (tile=8 covers each image with one tile, which gets no offset).
        assert np.all((phase >= norm.phase_min - 1e-5) & (phase <= norm.phase_max + 1e-5))
        if kwargs["return_samples"]:
            samples = result[2]
            assert samples.shape == i_minus.shape[:-2] + (2,) + i_minus.shape[-2:]

    check_contract(verdict, lambda: qpi.reconstruct(qpi_model, i_minus, i_plus, **kwargs),
                   check)


# ---------------------------------------------------------------------- sr

#: Wide-field images that reach the network (output grid 2x finer).
SR_SHAPES = ((4, 4), (3, 2), (2, 4, 4))


@st.composite
def wide_field_images(draw):
    kind = draw(st.sampled_from(("plausible", "plausible", "hostile")))
    if kind == "hostile":
        shapes = st.one_of(
            st.sampled_from(SR_SHAPES + ((8, 8, 3),)),
            any_shapes().filter(lambda s: len(s) not in (2, 3) or 0 in s),
        )
        return draw(hostile_arrays(shapes))
    shape = draw(st.sampled_from(SR_SHAPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level = draw(st.sampled_from((0.0, -50.0, 100.0, 1e29)))
    spread = draw(st.sampled_from((0.0, 1e-3, 50.0, 1e28)))
    dtype = draw(st.sampled_from(REAL_DTYPES))
    return cast(level + spread * rng.uniform(-1, 1, shape), dtype)


def sr_verdict(image):
    """The documented rules of a wide-field image (`sr.reconstruct`).

    Any finite real image in float32's range may be computed (the unit is free);
    beyond 1e30, where the image's span and the float32 results can overflow, it may
    be refused instead, but never returned as Inf.
    """
    shape = image.shape
    if not real(image) or len(shape) not in (2, 3) or 0 in shape:
        return REFUSE
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4:
        return REFUSE
    if finite_within(image, HUGE):
        return ACCEPT
    return EITHER if finite_within(image, FLOAT32_MAX) else REFUSE


SR_SPEC = {
    "num_samples": parameter((2, 2.0), COUNT_INVALID + (1, None)),
    "num_steps": parameter((None, 1), COUNT_INVALID),
    "factor": parameter((None, 2, 2.0, np.int64(2)), (3, 1, 2.7, 0, -2, True, "2", math.nan)),
    "batch_size": parameter((None, 2), COUNT_INVALID),
    "seed": SEEDS,
    "return_samples": parameter((False, True)),
}


SR_DEFAULTS = {"num_samples": 2, "num_steps": None, "factor": None, "batch_size": None,
               "seed": 0, "return_samples": False}


@MODEL_SETTINGS
@given(image=wide_field_images(), params=parameters(SR_SPEC))
@example(image=np.linspace(-3e38, 3e38, 16, dtype=np.float32).reshape(4, 4),
         params=(SR_DEFAULTS, True))
@example(image=np.full((4, 4), 3.4e38, np.float32), params=(SR_DEFAULTS, True))
def test_sr_reconstruct_returns_a_finer_image_or_refuses(sr_model, image, params):
    kwargs, valid = params
    verdict = sr_verdict(image) if valid else REFUSE

    def check(result):
        assert len(result) == (3 if kwargs["return_samples"] else 2)
        out, std = result[:2]
        fine = image.shape[:-2] + (2 * image.shape[-2], 2 * image.shape[-1])
        assert out.shape == std.shape == fine
        for array in result:
            assert np.all(np.isfinite(array))
        assert np.all(std >= 0)
        if kwargs["return_samples"]:
            assert result[2].shape == image.shape[:-2] + (2,) + fine[-2:]

    check_contract(verdict, lambda: sr.reconstruct(sr_model, image, **kwargs), check)


# ---------------------------------------------------------------------- io

def scaled(array):
    """`read_image(scale=True)` of stored data (the module docstring): uint8 / 255,
    uint16 / 65535, other integers and booleans as float32, floats unchanged (and
    complex numbers too: scaling never drops an imaginary part)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535)
    return array if array.dtype.kind in "fc" else array.astype(np.float32)


def squeeze_channel(array, rank):
    """An `(..., 1)` channel axis is dropped on writing a `rank`-D image."""
    return array[..., 0] if array.ndim == rank and array.shape[-1] == 1 else array


def assert_same(read, written):
    assert read.dtype == written.dtype, (read.dtype, written.dtype)
    assert read.shape == written.shape, (read.shape, written.shape)
    np.testing.assert_array_equal(read, written)


def tiff_write_verdict(array, rank):
    """What writing `array` as TIFF pages of `rank` axes (2 for an image, 3 for a stack,
    a trailing channel allowed) must do, and the array it stores."""
    stored = squeeze_channel(array, rank + 1)
    if array.ndim not in (rank, rank + 1):
        return REFUSE, stored
    if not array.size or (array.dtype == np.bool_ and stored.ndim == rank + 1):
        return EITHER, stored  # nothing to store; a bilevel TIFF page has no channels
    return ACCEPT, stored


@IO_SETTINGS
@given(image=hostile_arrays(st.one_of(any_shapes(), any_shapes(2, 3))),
       suffix=st.sampled_from((".tif", ".tiff", ".TIF")))
@example(image=np.eye(4, dtype=bool)[..., None] * np.array([True, False]), suffix=".tif")
@example(image=np.full((2, 3), 1 + 2j, np.complex64), suffix=".tif")
@example(image=np.zeros((1, 0), bool), suffix=".tif")
def test_tiff_images_round_trip_exactly_or_are_refused(folder, image, suffix):
    path = fresh_path(folder, suffix)
    verdict, stored = tiff_write_verdict(image, 2)
    colour = stored.ndim == 3
    if check_contract(verdict, lambda: io.write_image(path, image), lambda p: None) is None:
        return
    # What was written reads back exactly (an empty file may be refused instead).
    readable = ACCEPT if image.size else EITHER
    check_contract(readable, lambda: io.read_image(path, scale=False),
                   lambda read: assert_same(read, stored))
    check_contract(readable, lambda: io.read_stack(path, scale=False),
                   lambda read: assert_same(read, stored[None]))
    # Scaled reading: complex data is returned unchanged or refused, never made real.
    scalable = EITHER if image.dtype.kind == "c" else readable
    check_contract(scalable, lambda: io.read_image(path),
                   lambda read: assert_same(read, scaled(stored)))

    def grey(result):
        assert result.shape == image.shape[:2]
        if not colour:
            assert_same(result, scaled(stored))

    check_contract(REFUSE if colour and stored.shape[-1] > 4 and image.size else scalable,
                   lambda: io.read_image(path, as_gray=True), grey)
    check_contract(REFUSE if colour and image.size else readable,
                   lambda: io.read_planes(path, scale=False),
                   lambda planes: assert_same(planes, stored[None]))


@IO_SETTINGS
@given(image=hostile_arrays(st.one_of(any_shapes(), any_shapes(2, 2), st.tuples(
           st.integers(1, 9), st.integers(1, 9), st.sampled_from((1, 2, 3, 4)))),
           scales=(0.5, 255.0, 1e30), offsets=(1.0, 0.0), specials=1),
       dtype=st.sampled_from((None, "uint8", "uint16", "int16")))
@example(image=np.arange(18, dtype=np.uint8).reshape(2, 3, 3), dtype=None)
def test_png_images_round_trip_to_the_quantisation_step_or_are_refused(folder, image, dtype):
    path = fresh_path(folder, ".png")
    stored = squeeze_channel(image, 3)
    if image.dtype in (np.uint8, np.uint16):
        target = image.dtype if dtype in (None, image.dtype.name) else None
    elif image.dtype == np.bool_ or image.dtype.kind == "f":
        in_range = bool(np.all((image >= 0) & (image <= 1)))  # False for NaN
        target = np.dtype(dtype or "uint16") if in_range and dtype != "int16" else None
    else:
        target = None
    layout = stored.ndim == 2 or (stored.ndim == 3 and stored.shape[-1] in (3, 4)
                                  and target == np.uint8)
    verdict = REFUSE if target is None or not layout else ACCEPT
    if verdict == ACCEPT and not image.size:
        verdict = EITHER
    written = check_contract(verdict, lambda: io.write_image(path, image, dtype=dtype),
                             lambda p: None)
    if written is None:
        return
    read = io.read_image(path, scale=False)
    if image.dtype.kind in "u":
        assert_same(read, stored)
    else:
        top = np.iinfo(target).max
        assert read.dtype == target and read.shape == stored.shape
        assert np.all(np.abs(read / top - stored.astype(np.float64)) <= 0.5 / top + 1e-12)
    assert_same(io.read_image(path), scaled(read))
    assert_same(io.read_stack(path, scale=False), read[None])  # colour too: (1, H, W, C)
    assert io.read_image(path, as_gray=True).shape == read.shape[:2]
    check_contract(REFUSE if read.ndim == 3 else ACCEPT, lambda: io.read_planes(path),
                   lambda planes: assert_same(planes, scaled(read)[None]))


@IO_SETTINGS
@given(images=hostile_arrays(st.one_of(any_shapes(), any_shapes(2, 4))))
@example(images=np.zeros((2, 0, 3), np.float32))
@example(images=np.linspace(0, 1, 48, dtype=np.float32).reshape(3, 4, 4, 1))
def test_stacks_round_trip_exactly_or_are_refused(folder, images):
    # A NumPy file: read_planes takes a real (H, W) or (N, H, W) array as it is.
    npy = fresh_path(folder, ".npy")
    np.save(npy, images)
    check_contract(ACCEPT if real(images) and images.ndim in (2, 3) else REFUSE,
                   lambda: io.read_planes(npy),
                   lambda planes: assert_same(
                       planes, scaled(images if images.ndim == 3 else images[None])))
    # A multi-page TIFF.
    path = fresh_path(folder, ".tif")
    verdict, stored = tiff_write_verdict(images, 3)
    colour = stored.ndim == 4
    if check_contract(verdict, lambda: io.write_stack(path, images), lambda p: None) is None:
        return
    readable = ACCEPT if images.size else EITHER
    check_contract(readable, lambda: io.read_stack(path, scale=False),
                   lambda read: assert_same(read, stored))
    scalable = EITHER if images.dtype.kind == "c" else readable

    def grey(result):
        # One plane per image: a grey stack comes back unchanged, colour as luminance.
        assert result.shape == images.shape[:3]
        if not colour:
            assert_same(result, scaled(stored))

    check_contract(REFUSE if colour and stored.shape[-1] > 4 and images.size else scalable,
                   lambda: io.read_image(path, as_gray=True), grey)
    check_contract(REFUSE if colour and images.size else scalable,
                   lambda: io.read_planes(path),
                   lambda planes: assert_same(planes, scaled(stored)))
