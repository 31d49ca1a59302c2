"""sbrnn: sparse block RNNs, tuned in advance.

A child is a recurrent map ``[x_t; h_{t-1}; y_{t-1}] -> [h_t; y_t]`` whose weight space is a
2x3 grid of blocks, each with its own density, init mean and init std. A parent learns, from
records of many children, which configurations train well.

The Python API (imported on first use, so ``import sbrnn`` stays light)::

    SparseRNN        the child as a layer: x [B, T, n_x] -> (y [B, T, n_y], state)
    SparseBlockRNN   the child as sbrnn's trainer runs it: x -> y
    SparseBlockSpec  the weight space: sizes, densities, counts, h from a budget, hidden proportion
    balance          the paper's a-priori balanced configuration for n_x, n_y and a budget
    RunConfig, train_run   one training run on a registered task -> a RunRecord
    read_frame       a records directory as a polars DataFrame
    load_parent      a parent (None = the one shipped with sbrnn)
    recommend        a parent's recommendation for n_x, n_y and a budget
    TaskContext      what a parent knows of a task (sizes, length, loss, traits)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {  # public name -> (module, attribute)
    "SparseRNN": ("sbrnn.child.sparse_rnn", "SparseRNN"),
    "SparseBlockRNN": ("sbrnn.child.model", "SparseBlockRNN"),
    "SparseBlockSpec": ("sbrnn.child.weight_space", "SparseBlockSpec"),
    "balance": ("sbrnn.child.weight_space", "balance"),
    "RunConfig": ("sbrnn.child.config", "RunConfig"),
    "train_run": ("sbrnn.child.train", "train_run"),
    "read_frame": ("sbrnn.records", "read_frame"),
    "load_parent": ("sbrnn.parent.store", "open_parent"),
    "recommend": ("sbrnn.parent.recommend", "recommend_for"),
    "TaskContext": ("sbrnn.parent.features", "TaskContext"),
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sbrnn' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
