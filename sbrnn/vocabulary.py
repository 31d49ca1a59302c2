"""The project's vocabulary: the names every layer shares, defined once (no torch, no numpy).

``records``, ``datasets``, ``child`` and ``parent`` all speak of the same blocks, architectures,
loss kinds, activations, precisions and run statuses; they import them from here, so the record
schema stands below the code that trains and the code that reads.
"""

from __future__ import annotations

BLOCKS = ("hx", "hh", "hy", "yx", "yh", "yy")
"""The six blocks of the weight space, row (``h``, ``y``) then column (``x``, ``h``, ``y``)."""

ARCHS = ("sbrnn", "dense", "uniform", "lstm")
"""``sbrnn``: block densities as given (or a-priori balanced); ``dense``: every block at 1;
``uniform``: every block at one density (0.2 by default); ``lstm``: the LSTM baseline."""

BASELINE_ARCHS = ("dense", "uniform", "lstm")
"""The equal-budget baselines a sweep or a recommendation puts beside the sparse children."""

LOSS_KINDS = ("cross_entropy", "mse")
"""``cross_entropy``: one class label per sequence, scored on ``y`` after the last step.
``mse``: a target vector at every step, scored per scalar at every step."""

ACTIVATIONS = ("relu", "tanh")
"""The activation on ``h`` (ReLU in the authors' code)."""

PRECISIONS = ("fp32", "bf16")
"""``bf16`` trains under autocast; ``fp32`` does not."""

STATUSES = ("ok", "diverged", "failed", "pruned")
"""How a run ended: ``ok``; ``diverged`` (a non-finite loss); ``failed`` (an error, with its text);
``pruned`` (stopped by a tuner's pruner after the epochs its curve holds; not a failure)."""


def check_choice(what: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else :class:`~sbrnn.errors.SbrnnError` naming both."""
    from sbrnn.errors import SbrnnError

    if value not in allowed:
        raise SbrnnError(f"{what} {value!r} is unknown; allowed: {', '.join(allowed)}")
    return value
