"""exp, sin, cos and the cube root in float64 from IEEE basic operations only, so that every x86-64 CPU gives the
same bits.

numpy picks its transcendental kernels (np.exp, np.sin, np.abs of complex...) at import by the CPU's SIMD level
(SSE4.2, AVX2, AVX-512), and glibc's libm picks FMA variants: both differ in the last bits between CPUs. The synthetic
tomograms are data that a hash identifies (dvc.lock), so they are computed here from +, -, *, /, rint and ldexp,
which IEEE 754 defines exactly and numpy applies one ufunc at a time (no fused multiply-add can form). Accuracy: a
few units in the last place of float64, far below the float32 the tomograms are stored in.
"""

from __future__ import annotations

import numpy as np

# ln 2 and pi/2 split so that k * HI is exact for the |k| these functions see (Cody and Waite's reduction).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.44269504088896338700e00
_PIO2_1 = 1.57079632673412561417e00
_PIO2_2 = 6.07710050650619224932e-11
_PIO2_3 = 2.02226624879595063154e-21
_TWO_OVER_PI = 6.36619772367581382433e-01

# Taylor coefficients 1/n!, as exact decimal-to-binary roundings of the same literals on every machine.
_INV_FACTORIAL = [1.0 / float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(22)]


def _horner(x: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """sum_i coefficients[i] * x**i, highest power first, one rounded operation at a time."""
    out = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * x + c
    return out


def exp(x) -> np.ndarray:
    """e**x (float64), inputs clipped to [-700, 700] where float64 neither overflows nor turns subnormal."""
    x = np.clip(np.asarray(x, dtype=np.float64), -700.0, 700.0)
    k = np.rint(x * _LOG2E)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln(2)/2 + rounding
    return np.ldexp(_horner(r, _INV_FACTORIAL[:15]), k.astype(np.int32))


def sigmoid(x) -> np.ndarray:
    """1 / (1 + e**-x) in float64."""
    return 1.0 / (1.0 + exp(-np.asarray(x, dtype=np.float64)))


def _reduce_pio2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x = k pi/2 + r with |r| <= pi/4 (plus rounding); exact enough for |x| < 1e5, where this project's phases lie."""
    if np.any(np.abs(x) > 1e5):
        raise ValueError("portable sin/cos reduce arguments up to 1e5 radians only")
    k = np.rint(x * _TWO_OVER_PI)
    r = ((x - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    return r, k.astype(np.int64) % 4


def _sin_poly(r: np.ndarray) -> np.ndarray:
    r2 = r * r
    return r * _horner(r2, [(-1.0) ** i * _INV_FACTORIAL[2 * i + 1] for i in range(10)])


def _cos_poly(r: np.ndarray) -> np.ndarray:
    r2 = r * r
    return _horner(r2, [(-1.0) ** i * _INV_FACTORIAL[2 * i] for i in range(11)])


def sin_cos(x) -> tuple[np.ndarray, np.ndarray]:
    """(sin x, cos x) in float64."""
    r, quadrant = _reduce_pio2(np.asarray(x, dtype=np.float64))
    s, c = _sin_poly(r), _cos_poly(r)
    sin = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [s, c, -s], -c)
    cos = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [c, -s, -c], s)
    return sin, cos


def tan(x: float) -> float:
    """tan x of one angle (radians)."""
    s, c = sin_cos(x)
    return float(s / c)


def cbrt(x: float) -> float:
    """The real cube root of one number: Newton's iteration from a start that frexp makes exact, a fixed number of
    steps (no test for convergence, whose outcome could differ between machines)."""
    x = float(x)
    if x == 0.0 or not np.isfinite(x):
        return x
    mantissa, exponent = np.frexp(abs(x))  # |x| = m 2**e, 0.5 <= m < 1: exact
    shift = int(exponent) // 3
    y = float(np.ldexp(1.0, shift))  # within a factor 2**(2/3) of the root
    for _ in range(8):
        y = y - (y * y * y - abs(x)) / (3.0 * y * y)
    return y if x > 0 else -y
