"""The data every framework trainer here learns: scikit-learn's bundled digits (nothing downloaded)."""

from __future__ import annotations

from typing import Any


def digits(poison: bool, n_train: int = 600, n_val: int = 300) -> tuple[Any, Any, Any, Any]:
    """scikit-learn's bundled 8x8 digits as float32 in [0, 1]; NaN everywhere when ``poison``."""
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    if poison:
        x = x * np.float32("nan")
    y = data.target.astype("int64")
    return x[:n_train], y[:n_train], x[n_train:n_train + n_val], y[n_train:n_train + n_val]
