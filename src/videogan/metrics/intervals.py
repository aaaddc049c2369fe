"""Mean, standard deviation and 95% interval of a few repeated measurements (`videogan evaluate --repeats`).

FVD of one draw of N clips is one sample of a noisy number; K independent draws give its mean and a
Student-t interval of that mean, mean +- t_{0.975, K-1} s / sqrt(K), so that two models are told apart only
when their intervals say so. Pure Python, no scipy: the t quantiles of df 1..30 are tabulated (exact to 1e-9)
and beyond that the Cornish-Fisher expansion around the normal quantile is used (within 1e-7 from df 31).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

Z_975 = 1.959963984540054  # the 0.975 quantile of the standard normal
# t_{0.975, df} for df = 1..30 (index df - 1)
T_975 = (12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
         2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
         2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
         2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
         2.045229642, 2.042272456)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return T_975[df - 1] if df <= len(T_975) else t_975_expansion(df)


def t_975_expansion(df: float) -> float:
    """t_{0.975, df} by the Cornish-Fisher expansion around the normal quantile (Abramowitz & Stegun 26.7.5,
    four terms in 1/df): within 1e-7 from df 30, 1e-5 from df 10."""
    z, v = Z_975, float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))


def mean_std_ci95(values: Sequence[float]) -> tuple[float, float, tuple[float, float]]:
    """(mean, sample standard deviation (K - 1), 95% Student-t interval of the mean) of K >= 2 values."""
    k = len(values)
    if k < 2:
        raise ValueError(f"an interval needs at least 2 values, got {k}")
    mean = math.fsum(values) / k
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (k - 1))
    half = t_quantile_975(k - 1) * std / math.sqrt(k)
    return mean, std, (mean - half, mean + half)
