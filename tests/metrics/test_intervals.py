"""Mean, standard deviation and 95% Student-t interval of repeated measurements (metrics/intervals.py)."""
import math

import numpy as np
import pytest

from videogan.metrics.intervals import T_975, Z_975, mean_std_ci95, t_975_expansion, t_quantile_975

# t_{0.975, df} from standard tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2), to 3 decimals
KNOWN = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 19: 2.093, 29: 2.045,
         30: 2.042, 40: 2.021, 60: 2.000, 100: 1.984, 120: 1.980}


@pytest.mark.parametrize(("df", "expected"), sorted(KNOWN.items()))
def test_t_quantiles_match_the_tables(df, expected):
    assert t_quantile_975(df) == pytest.approx(expected, abs=5e-4)


def test_the_expansion_beyond_the_table_joins_it_and_tends_to_the_normal():
    for df in (10, 20, 30):  # where both exist, the expansion agrees with the exact table
        assert t_975_expansion(df) == pytest.approx(T_975[df - 1], abs=1e-5 if df == 10 else 1e-6)
    values = [t_quantile_975(df) for df in range(1, 500)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # decreasing in df
    assert t_quantile_975(31) == pytest.approx(2.039513, abs=1e-6)
    assert t_quantile_975(10**6) == pytest.approx(Z_975, abs=1e-5) and len(T_975) == 30
    with pytest.raises(ValueError, match="at least 1"):
        t_quantile_975(0)


def test_mean_std_and_interval_of_known_values():
    mean, std, (lo, hi) = mean_std_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == 1.0  # sample standard deviation (K - 1)
    half = 4.302652730 / math.sqrt(3)
    assert (lo, hi) == pytest.approx((2.0 - half, 2.0 + half), abs=1e-9)
    values = np.random.default_rng(0).normal(100, 10, 50)
    mean, std, (lo, hi) = mean_std_ci95(list(values))
    assert mean == pytest.approx(values.mean()) and std == pytest.approx(values.std(ddof=1))
    assert (hi - lo) / 2 == pytest.approx(2.009575 * std / math.sqrt(50), rel=1e-6)  # t_{0.975, 49}


def test_equal_values_have_a_zero_width_interval_and_one_value_has_none():
    assert mean_std_ci95([5.0, 5.0]) == (5.0, 0.0, (5.0, 5.0))
    with pytest.raises(ValueError, match="at least 2 values"):
        mean_std_ci95([1.0])
