"""One warning per call when a path method's scores are dominated by its approximation error.

Integrated gradients and its discrete variants promise that a row's scores add up to
``F(x) - F(x')``; the step score ``completeness_error`` is how far the quadrature sum is from it.
With few steps on a log-probability the error can exceed the quantity itself, and scores that
are mostly error cannot be ranked; :func:`warn_if_unconverged` says so once, with the fix.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     out = model.attribute(prompt, " Paris", method="integrated_gradients", n_steps=1)
    >>> any("completeness_error" in str(w.message) for w in caught)
    True
"""

from __future__ import annotations

import warnings

import torch

from genattrib.engine.contract import Attributor
from genattrib.errors import GenattribWarning
from genattrib.output import FeatureAttributionOutput

#: Warn when a row's |completeness_error| exceeds this share of |F(x) - F(x')|.
COMPLETENESS_TOLERANCE = 0.1


def relative_errors(out: FeatureAttributionOutput) -> torch.Tensor:
    """``|completeness_error| / |F(x) - F(x')|`` for every explained token of ``out`` that records
    the step score (``F(x) - F(x')`` is the token's score sum less its error); tokens where
    ``F(x) = F(x')`` are left out."""
    values = []
    for seq in out.sequences:
        error, scores = seq.step_scores.get("completeness_error"), seq.scores
        if error is None or not isinstance(scores, torch.Tensor):
            continue
        error = error.float()
        delta = scores.float().nan_to_num().flatten(1).sum(-1) - error  # dense scores: summed over hidden too
        keep = (delta.abs() > 1e-6) & torch.isfinite(error)
        values.append(error[keep].abs() / delta[keep].abs())
    return torch.cat(values) if values else torch.empty(0)


def unconverged_share(out: FeatureAttributionOutput) -> float:
    """The largest ``|completeness_error| / |F(x) - F(x')|`` over the rows of ``out`` (0 when no
    row says; see :func:`relative_errors`)."""
    errors = relative_errors(out)
    return float(errors.max()) if errors.numel() else 0.0


def warn_if_unconverged(out: FeatureAttributionOutput, method: Attributor) -> None:
    """A :class:`GenattribWarning` when a completeness-promising method missed by more than
    :data:`COMPLETENESS_TOLERANCE` on some row (by more than its ``tolerance`` with ``n_steps="auto"``)."""
    if not method.traits.promises_completeness or method.traits.default_reduction != "sum":
        return
    auto = getattr(method.params, "n_steps", None) == "auto"
    tolerance = float(method.params.tolerance) if auto else COMPLETENESS_TOLERANCE
    share = unconverged_share(out)
    if share > tolerance:
        name = next((n for n in ("n_steps", "n_anchors") if isinstance(getattr(method.params, n, None), int)), None)
        more = f"{name}={4 * getattr(method.params, name)}" if name else "more path points"
        if auto:
            cap = method.params.max_steps
            more = f"n_steps='auto' stopped at max_steps={cap} (step score n_steps_used); use max_steps={4 * cap}"
        flatter = (
            ""
            if out.provenance.attributed_fn == "probability"
            else ", or attributed_fn='probability' (a flatter path than the log-probability)"
        )
        warnings.warn(
            GenattribWarning(
                f"{method.name}: on some step the scores miss F(x) - F(x') by {share:.0%} of it (step score "
                f"completeness_error), so they are partly approximation error; use {more}{flatter}"
            ),
            stacklevel=4,
        )
