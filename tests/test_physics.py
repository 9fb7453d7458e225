"""Physics: Fresnel propagation, defocus imaging, TIE, and the microscopy degradation.

Every test checks a closed form, a conservation law or a symmetry, not stored outputs.
"""

import numpy as np
import pytest

from keras_cvdm.metrics import phase_mae
from keras_cvdm.physics import (
    airy_psf,
    convolve,
    defocus_pair,
    defocus_stack,
    degrade,
    downsample,
    fresnel_propagate,
    gaussian_psf,
    gaussian_sigma,
    make_psf,
    poisson_gaussian_noise,
    polychromatic_defocus,
    tie_phase,
    tune_tie_regularization,
    upsample,
)
from keras_cvdm.physics.microscopy import _bessel_j1

WL, DX, DZ = 0.521, 0.21, 1.0


def _random_field(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _bumps(n=128, seed=0, peak=0.5, num=6, width=(1.5, 3.0)):
    """A smooth phase: a sum of Gaussian bumps (µm widths), away from the borders."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:n, 0:n] - n / 2) * DX
    half = n * DX / 2
    phase = np.zeros((n, n))
    for _ in range(num):
        cy, cx = rng.uniform(-0.5 * half, 0.5 * half, 2)
        s = rng.uniform(*width)
        phase += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))
    return peak * phase / phase.max()


# --------------------------------------------------------------------------- propagation


@pytest.mark.parametrize("distance", [-7.0, 0.5, 3.0, 20.0])
def test_propagation_conserves_energy(distance):
    field = _random_field((2, 64, 48))
    out = fresnel_propagate(field, WL, DX, distance)
    assert out.dtype == np.complex64 and out.shape == field.shape
    energy_in = np.sum(np.abs(field) ** 2, axis=(-2, -1))
    energy_out = np.sum(np.abs(out.astype(np.complex128)) ** 2, axis=(-2, -1))
    np.testing.assert_allclose(energy_out, energy_in, rtol=1e-5)


def test_propagation_forward_then_backward_is_identity():
    field = _random_field((64, 64), seed=1)
    there = fresnel_propagate(field, WL, DX, 5.0)
    back = fresnel_propagate(there, WL, DX, -5.0)
    assert np.max(np.abs(there - field)) > 0.1  # it did move
    np.testing.assert_allclose(back, field, atol=1e-5)


def test_propagation_composes():
    field = _random_field((32, 32), seed=2)
    two_steps = fresnel_propagate(fresnel_propagate(field, WL, DX, 1.5), WL, DX, 2.5)
    np.testing.assert_allclose(two_steps, fresnel_propagate(field, WL, DX, 4.0), atol=1e-5)


def test_pure_phase_object_has_uniform_intensity_in_focus():
    phase = 3.5 * np.random.default_rng(3).uniform(size=(64, 64))
    (intensity,) = defocus_stack(phase, WL, DX, (0.0,))
    np.testing.assert_allclose(intensity, 1.0, atol=1e-6)


@pytest.mark.parametrize("z", [1.0, 10.0, 60.0, -25.0])
def test_weak_phase_grating_follows_the_phase_contrast_transfer_function(z):
    # φ = a cos(2π f x) ⇒ I(z) = 1 + 2a sin(π λ z f²) cos(2π f x) + O(a²), a closed form
    # that fixes the sign convention (a phase bump focuses at +z) and the chirp factor.
    n, a = 128, 1e-3
    f = 6 / (n * DX)  # an integer number of periods in the window
    x = np.arange(n) * DX
    phase = np.broadcast_to(a * np.cos(2 * np.pi * f * x), (n, n))
    (intensity,) = defocus_stack(phase, WL, DX, (z,))
    expected = 1 + 2 * a * np.sin(np.pi * WL * z * f**2) * np.cos(2 * np.pi * f * x)
    np.testing.assert_allclose(intensity[0], expected, atol=5 * a**2 + 1e-6)
    np.testing.assert_allclose(
        intensity, np.broadcast_to(intensity[:1], intensity.shape), atol=1e-6
    )  # no y dependence


def test_thin_lens_focuses_at_the_geometric_focal_length():
    # A converging lens of focal length f has phase -k r² / (2 f) (this convention).
    # Parameters keep the lens phase and the transfer function well sampled
    # (|z| < N dx² / λ = 128 µm); the Fresnel number R²/(λ f) ≈ 26 makes the focal
    # shift negligible, so the on-axis intensity must peak at z ≈ f.
    n, dx, wl, focal, radius = 256, 0.5, 0.5, 80.0, 32.0
    yy, xx = (np.mgrid[0:n, 0:n] - n // 2) * dx
    r2 = xx**2 + yy**2
    aperture = (r2 <= radius**2).astype(float)
    k = 2 * np.pi / wl
    field = aperture * np.exp(-1j * k * r2 / (2 * focal))
    zs = np.linspace(40.0, 120.0, 81)
    on_axis = [abs(fresnel_propagate(field, wl, dx, z)[n // 2, n // 2]) ** 2 for z in zs]
    z_peak = zs[int(np.argmax(on_axis))]
    assert abs(z_peak - focal) <= 0.03 * focal
    # Geometric optics: all the light passing the aperture meets in a spot, so the peak
    # intensity far exceeds the illumination (energy concentrated from π R² into ~λ²).
    assert max(on_axis) > 100.0
    # A diverging lens (f < 0) never focuses downstream.
    diverging = aperture * np.exp(+1j * k * r2 / (2 * focal))
    assert abs(fresnel_propagate(diverging, wl, dx, focal)[n // 2, n // 2]) ** 2 < 2.0


def test_defocus_pair_is_conjugate_symmetric_and_conserves_mean():
    # For a pure phase object, I(+dz)[φ] = I(-dz)[-φ] (complex conjugation symmetry).
    phase = 3.5 * np.random.default_rng(4).uniform(size=(2, 48, 48))
    i_minus, i_plus = defocus_pair(phase, WL, DX, DZ)
    j_minus, j_plus = defocus_pair(-phase, WL, DX, DZ)
    np.testing.assert_allclose(i_plus, j_minus, atol=1e-5)
    np.testing.assert_allclose(i_minus, j_plus, atol=1e-5)
    np.testing.assert_allclose(i_minus.mean(axis=(-2, -1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(i_plus.mean(axis=(-2, -1)), 1.0, atol=1e-5)
    assert i_minus.dtype == np.float32


def test_positive_phase_bump_brightens_after_focus():
    phase = _bumps(64, seed=5, peak=1.0, num=1)
    centre = np.unravel_index(np.argmax(phase), phase.shape)
    i_minus, i_plus = defocus_pair(phase, WL, DX, DZ)
    assert i_plus[centre] > 1.0 > i_minus[centre]


def test_polychromatic_reduces_to_monochromatic_and_scales_phase():
    phase = _bumps(64, seed=6, peak=2.0)
    rgb = polychromatic_defocus(
        phase, DX, defocus=(0.0, 1.0, -2.0), bandwidths=0.0, reference_wavelength=None
    )
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[..., 0], 1.0, atol=1e-5)  # in focus: uniform
    np.testing.assert_allclose(rgb[..., 1], defocus_pair(phase, 0.550, DX, 1.0)[1], atol=1e-5)
    np.testing.assert_allclose(rgb[..., 2], defocus_pair(phase, 0.450, DX, 2.0)[0], atol=1e-5)
    # A fixed optical path: phase given at 0.55 µm is 0.55/0.45 times larger at 0.45 µm.
    scaled = polychromatic_defocus(
        phase, DX, defocus=1.0, bandwidths=0.0, reference_wavelength=0.550
    )
    expected_blue = defocus_pair(phase * 0.550 / 0.450, 0.450, DX, 1.0)[1]
    np.testing.assert_allclose(scaled[..., 2], expected_blue, atol=1e-5)
    # A finite band is a weighted average of monochromatic images: energy is conserved
    # and the defocus contrast is no larger than the centre wavelength's.
    band = polychromatic_defocus(phase, DX, defocus=1.0, bandwidths=0.05, num_wavelengths=7)
    np.testing.assert_allclose(band.mean(axis=(0, 1)), 1.0, atol=1e-5)
    assert not np.allclose(band, scaled, atol=1e-3)


# --------------------------------------------------------------------------- TIE


def test_tie_recovers_a_weak_smooth_phase():
    phase = _bumps(128, seed=7, peak=0.5)
    i_minus, i_plus = defocus_pair(phase, WL, DX, DZ)
    estimate = tie_phase(i_minus, i_plus, WL, DX, DZ, regularization=1e-6)
    assert estimate.dtype == np.float32 and estimate.shape == phase.shape
    assert abs(float(estimate.mean())) < 1e-5  # the constant is undetermined: zero mean
    assert phase_mae(estimate, phase) < 0.05 * phase.max()


def test_tie_symmetric_boundary_handles_non_periodic_data():
    # A bump near the left edge: the measured window is not periodic. Simulate the
    # window's mirror-symmetric extension (a valid periodic object) and keep one quadrant:
    # these are the intensities a real camera window would record for an object with
    # mirror-symmetric surroundings. The mirror-boundary solver then sees consistent
    # data, while the periodic solver sees a jump at the wrap-around.
    n = 128
    yy, xx = np.mgrid[0:n, 0:n] * DX
    phase = 0.5 * np.exp(-((xx - 3.0) ** 2 + (yy - 12.0) ** 2) / (2 * 2.0**2))
    extended = np.concatenate([phase, phase[::-1]], axis=0)
    extended = np.concatenate([extended, extended[:, ::-1]], axis=1)
    i_minus, i_plus = (i[:n, :n] for i in defocus_pair(extended, WL, DX, DZ))
    mirrored = phase_mae(tie_phase(i_minus, i_plus, WL, DX, DZ, 1e-6, boundary="symmetric"), phase)
    periodic = phase_mae(tie_phase(i_minus, i_plus, WL, DX, DZ, 1e-6), phase)
    assert mirrored < 0.05 * phase.max()
    assert periodic > 2 * mirrored


def test_tie_error_grows_with_noise():
    phase = _bumps(128, seed=8, peak=0.5)
    i_minus, i_plus = defocus_pair(phase, WL, DX, DZ)
    noise = np.random.default_rng(9).standard_normal((2, 128, 128))
    errors = [
        float(
            phase_mae(
                tie_phase(i_minus + s * noise[0], i_plus + s * noise[1], WL, DX, DZ, 1e-3), phase
            )
        )
        for s in (0.0, 0.01, 0.05, 0.2)
    ]
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors


def test_tie_teague_handles_non_uniform_amplitude():
    yy, xx = (np.mgrid[0:128, 0:128] - 64) * DX
    phase = 0.5 * np.exp(-((xx - 2) ** 2 + yy**2) / 8.0)
    amplitude = np.sqrt(1 - 0.5 * np.exp(-((xx + 1) ** 2 + (yy - 1) ** 2) / 6.0))
    i_minus, i_plus = defocus_pair(phase, WL, DX, 0.5, amplitude=amplitude)
    uniform = phase_mae(tie_phase(i_minus, i_plus, WL, DX, 0.5, 1e-8), phase)
    teague = phase_mae(tie_phase(i_minus, i_plus, WL, DX, 0.5, 1e-8, method="teague"), phase)
    assert teague < 0.5 * uniform
    assert teague < 0.01 * phase.max()


def test_tune_tie_regularization_picks_the_minimum_and_regularises_more_under_noise():
    phase = np.stack([_bumps(64, seed=s, peak=0.5) for s in range(3)])
    i_minus, i_plus = defocus_pair(phase, WL, DX, DZ)
    grid = [1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2]
    best_clean, errors = tune_tie_regularization(i_minus, i_plus, phase, WL, DX, DZ, grid)
    assert set(errors) == set(grid) and errors[best_clean] == min(errors.values())
    noise = np.random.default_rng(10).standard_normal((2, *phase.shape))
    best_noisy, _ = tune_tie_regularization(
        i_minus + 0.2 * noise[0], i_plus + 0.2 * noise[1], phase, WL, DX, DZ, grid
    )
    assert best_noisy > best_clean


def test_phase_mae_alignments():
    target = np.random.default_rng(11).uniform(size=(2, 16, 16))
    shifted = target + 0.7
    np.testing.assert_allclose(phase_mae(shifted, target), 0.0, atol=1e-6)
    np.testing.assert_allclose(phase_mae(shifted, target, "none"), 0.7, atol=1e-6)
    pinned = target - target.min(axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(phase_mae(shifted, pinned, "min"), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="alignment"):
        phase_mae(shifted, target, "median")


def test_physics_argument_errors():
    with pytest.raises(ValueError, match="wavelength"):
        fresnel_propagate(np.ones((8, 8)), -0.5, DX, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        tie_phase(np.ones((8, 8)), np.ones((8, 9)))
    with pytest.raises(ValueError, match="method"):
        tie_phase(np.ones((8, 8)), np.ones((8, 8)), method="us-tie")


# --------------------------------------------------------------------------- microscopy


def test_bessel_j1_matches_scipy():
    special = pytest.importorskip("scipy.special")
    x = np.linspace(0.0, 80.0, 2001)
    np.testing.assert_allclose(_bessel_j1(x), special.j1(x), atol=1e-12)


@pytest.mark.parametrize(
    "psf",
    [
        gaussian_psf(1.3),
        gaussian_psf(wavelength=0.5, na=1.2, pixel_size=0.04),
        airy_psf(0.488, 1.3, 0.0313),
        airy_psf(0.6, 0.8, 0.1, oversample=1),
        make_psf("gaussian"),
    ],
)
def test_psfs_are_normalised_centred_and_symmetric(psf):
    assert psf.dtype == np.float32 and psf.shape[0] % 2 == 1
    np.testing.assert_allclose(psf.sum(), 1.0, rtol=1e-6)
    c = psf.shape[0] // 2
    assert np.unravel_index(np.argmax(psf), psf.shape) == (c, c)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-9)
    np.testing.assert_allclose(psf, psf.T, atol=1e-9)


def test_airy_first_dark_ring_and_gaussian_fit():
    wl, na = 0.5, 1.0
    zero = 0.61 * wl / na
    dx = zero / 20  # the first zero falls 20 pixels from the centre
    psf = airy_psf(wl, na, dx, size=81, oversample=1).astype(np.float64)
    profile = psf[40, 40:]
    ring = 15 + int(np.argmin(profile[15:26]))
    assert ring == 20
    assert profile[ring] < 1e-4 * profile[0]
    # The Gaussian fit σ = 0.21 λ/NA matches the Airy core: the half maximum of the Airy
    # profile lies at FWHM/2 = sqrt(2 ln 2) σ within half a pixel.
    sigma = gaussian_sigma(wl, na, dx)
    core = profile[:20] / profile[0]
    half_max = np.interp(0.5, core[::-1], np.arange(20)[::-1])
    assert abs(half_max - np.sqrt(2 * np.log(2)) * sigma) < 0.06 * half_max


def test_gaussian_psf_variance_is_sigma_squared():
    sigma = 2.0
    psf = gaussian_psf(sigma, size=41).astype(np.float64)
    r = np.arange(41) - 20
    assert abs(np.sum(psf * r[None, :] ** 2) - sigma**2) < 1e-6


def test_convolve_point_gives_psf_and_conserves_signal():
    psf = airy_psf(0.5, 1.0, 0.1)
    image = np.zeros((64, 64))
    image[20, 30] = 1.0
    out = convolve(image, psf)
    r = psf.shape[0] // 2
    np.testing.assert_allclose(out[20 - r : 21 + r, 30 - r : 31 + r], psf, atol=1e-7)
    rng = np.random.default_rng(12)
    img = rng.uniform(size=(3, 40, 56))
    np.testing.assert_allclose(convolve(img, psf).sum(axis=(1, 2)), img.sum(axis=(1, 2)), rtol=1e-5)
    # Mirror boundaries keep a constant image constant (no wrap-around, no darkening).
    np.testing.assert_allclose(convolve(np.full((32, 32), 3.0), psf, "reflect"), 3.0, rtol=1e-5)


def test_convolve_matches_direct_convolution():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(13)
    img = rng.uniform(size=(30, 34))
    kernel = rng.uniform(size=(5, 7))
    expected = ndimage.convolve(img, kernel, mode="wrap")
    np.testing.assert_allclose(convolve(img, kernel), expected, rtol=1e-5, atol=1e-6)
    expected = ndimage.convolve(img, kernel, mode="reflect")
    np.testing.assert_allclose(convolve(img, kernel, "reflect"), expected, rtol=1e-5, atol=1e-6)


def test_downsample_conserves_mean_and_averages_blocks():
    rng = np.random.default_rng(14)
    img = rng.uniform(size=(2, 24, 36))
    for factor in (2, 3, 4):
        low = downsample(img, factor)
        assert low.shape == (2, 24 // factor, 36 // factor)
        np.testing.assert_allclose(low.mean(axis=(1, 2)), img.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(downsample(img, 3)[1, 2, 5], img[1, 6:9, 15:18].mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="crop"):
        downsample(np.ones((10, 10)), 3)


def test_upsample_alignment_and_polynomial_reproduction():
    rng = np.random.default_rng(15)
    low = rng.uniform(size=(12, 10))
    np.testing.assert_allclose(downsample(upsample(low, 3, "nearest"), 3), low, rtol=1e-6)
    # Interpolation at pixel centres aligned with `downsample`: an affine ramp sampled at
    # low-res centres is reproduced exactly by linear and cubic interpolation (away from
    # clamped edges); Keys' cubic also reproduces quadratics.
    factor, n = 4, 16
    u = np.arange(n, dtype=float)  # low-res centre coordinates
    fine = (np.arange(n * factor) + 0.5) / factor - 0.5
    inner = slice(2 * factor, (n - 2) * factor)
    for method, poly in (("linear", lambda t: 2 * t + 1), ("cubic", lambda t: 0.1 * t**2 - t)):
        out = upsample(np.outer(np.ones(4), poly(u)), factor, method)[0]
        np.testing.assert_allclose(out[inner], poly(fine)[inner], rtol=1e-5, atol=1e-4)


def test_poisson_gaussian_noise_has_the_right_mean_and_variance():
    counts = np.full((400, 400), 30.0)
    counts[:, 200:] = 120.0
    noisy = poisson_gaussian_noise(counts, read_noise_std=3.0, seed=16).astype(np.float64)
    for sl, lam in ((np.s_[:, :200], 30.0), (np.s_[:, 200:], 120.0)):
        values = noisy[sl]
        n = values.size
        var = lam + 9.0
        assert abs(values.mean() - lam) < 5 * np.sqrt(var / n)
        assert abs(values.var() - var) < 5 * var * np.sqrt(2.0 / n) * 1.5
    np.testing.assert_array_equal(noisy, poisson_gaussian_noise(counts, 3.0, seed=16))
    with pytest.raises(ValueError, match=">= 0"):
        poisson_gaussian_noise(-np.ones(3))


def test_degrade_conserves_mean_and_adds_calibrated_noise():
    rng = np.random.default_rng(17)
    img = rng.uniform(size=(64, 64))
    clean = degrade(img, 2, gaussian_psf(1.5))
    assert clean.shape == (32, 32)
    np.testing.assert_allclose(clean.mean(), img.mean(), rtol=1e-5)
    photons = 400.0
    noisy = degrade(np.ones((256, 256)), 2, gaussian_psf(1.0), photons, seed=1).astype(float)
    assert abs(noisy.mean() - 1.0) < 5 * np.sqrt(1 / photons / noisy.size)
    assert abs(noisy.std() - 1 / np.sqrt(photons)) < 0.05 / np.sqrt(photons)
