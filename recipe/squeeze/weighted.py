"""Ensemble selection: a weighted ensemble of squeeze's candidates, fitted on the validation split.

Greedy forward selection with replacement (Caruana, Niculescu-Mizil, Crew & Ksikes, "Ensemble Selection from
Libraries of Models", ICML 2004; the algorithm behind AutoGluon's ``WeightedEnsemble`` and auto-sklearn's final
ensemble): start from nothing; in each of ``rounds`` rounds add the candidate (the same one may come back) whose
addition gives the averaged outputs the lowest validation loss; keep the prefix of rounds with the lowest loss
(AutoGluon's rule: extra rounds never make it worse on val). A candidate's weight is how often it was added,
divided by the rounds kept.

The criterion is the task's loss (log loss for classification, the regression loss otherwise), not the metric:
on a few hundred validation samples accuracy moves in steps of one sample and ties everywhere, while the log loss
is a proper scoring rule that ranks calibrated probability blends smoothly (Caruana et al. 2004 hill-climb on
whichever metric they report; with small hill-climb sets they found smooth metrics overfit less).

Outputs are probabilities (classification, (N, K) rows summing to 1) or predictions ((N, 1)); a blend is their
weighted mean, so the weighted ensemble is one more averaged ensemble, of the networks of the candidates chosen,
each network weighted by its candidates' weights over their sizes (:func:`net_weights`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from recipe.tasks import Task

ROUNDS = 25  # AutoGluon's default ensemble_size for its WeightedEnsemble (auto-sklearn: 50)
TIE = 1e-12  # losses closer than this are equal (float64 sums of the same numbers in another order)


def blend_loss(outputs: np.ndarray, y: np.ndarray, task: Task) -> float:
    """The task's training loss of blended ``outputs`` on targets ``y``, in float64: the log loss of
    probabilities (N, K) for classification (the cross-entropy the networks minimise), the MSE of predictions
    (N, 1) otherwise."""
    out = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(y)
    if task.classifier:
        return float(-np.log(np.clip(out[np.arange(len(y)), y.astype(np.int64)], 1e-12, None)).mean())
    return float(((out.reshape(len(y)) - y.astype(np.float64)) ** 2).mean())


def ensemble_selection(
    outputs: Sequence[np.ndarray],
    y: np.ndarray,
    task: Task,
    *,
    rounds: int = ROUNDS,
    nets: Sequence[Mapping[Hashable, int]] | None = None,
    max_params: int | None = None,
    init: Mapping[int, int] | None = None,
) -> np.ndarray:
    """Weights (summing to 1, shape (C,)) of ``C`` candidates' validation ``outputs`` (each (N, K) probabilities or
    (N, 1) predictions) chosen by greedy forward selection with replacement on the task's loss (see the module).

    ``nets`` (optional, one per candidate): the candidate's networks, a key -> parameters mapping; with
    ``max_params`` a candidate is only added while the networks of all candidates chosen so far, each counted
    once, have at most ``max_params`` parameters. Ties go to the earlier candidate.

    ``init`` (candidate index -> count): the selection starts from these candidates, added that many times,
    before the greedy rounds (Caruana et al.'s sorted initialisation, section 2.2, with the recipe's prior in place
    of a val ranking: the squeeze stage starts from the ensemble). The blend never drops below them: only rounds
    after them are cut. Init candidates over ``max_params`` are left out of it.

    Raises ValueError when there is no candidate, the outputs' shapes differ from each other or from ``y``, an
    ``init`` index or count is out of range, or no candidate fits ``max_params`` on its own.
    """
    if not outputs:
        raise ValueError("ensemble selection needs at least one candidate's outputs")
    stack = np.stack([np.asarray(o, dtype=np.float64) for o in outputs])  # (C, N, K); raises on unequal shapes
    if stack.shape[1] != len(y):
        raise ValueError(f"ensemble selection: outputs have {stack.shape[1]} rows, the targets {len(y)}")
    if rounds < 1:
        raise ValueError(f"ensemble selection needs rounds >= 1, got {rounds}")
    if nets is not None and len(nets) != len(stack):
        raise ValueError(f"ensemble selection: {len(nets)} network lists for {len(stack)} candidates")
    counts = np.zeros(len(stack), dtype=np.int64)
    chosen: dict[Hashable, int] = {}
    for c, k in (init or {}).items():
        if not 0 <= c < len(stack) or k < 0:
            raise ValueError(f"ensemble selection: init {{{c}: {k}}} names no candidate of {len(stack)} or counts < 0")
        if k and (max_params is None or nets is None or sum({**chosen, **nets[c]}.values()) <= max_params):
            counts[c] += k
            chosen.update(nets[c] if nets is not None else {})
    start = int(counts.sum())
    total = np.tensordot(counts.astype(np.float64), stack, 1)
    best_loss = blend_loss(total / start, y, task) if start else np.inf
    best_counts = counts.copy()
    for r in range(start + 1, start + rounds + 1):
        trial = []
        for c in range(len(stack)):
            if max_params is not None and nets is not None:
                union = {**chosen, **nets[c]}
                if sum(union.values()) > max_params:
                    continue
            trial.append((blend_loss((total + stack[c]) / r, y, task), c))
        if not trial:
            if r == 1:  # nothing chosen and nothing fits
                raise ValueError(f"no candidate has at most max_params={max_params:,} parameters")
            break
        lowest = min(loss for loss, _ in trial)
        loss, c = next((loss, c) for loss, c in trial if loss <= lowest + TIE)  # a tie: the earlier candidate
        counts[c] += 1
        total += stack[c]
        if nets is not None:
            chosen.update(nets[c])
        if loss < best_loss - TIE:  # the earliest prefix with the lowest loss
            best_loss, best_counts = loss, counts.copy()
    return best_counts / best_counts.sum()


def net_weights(weights: Sequence[float], nets: Sequence[Sequence[Hashable]]) -> dict[Hashable, float]:
    """Per-network weights of a weighted blend of candidates: candidate ``c`` averages its networks ``nets[c]``
    uniformly, so each of them gets ``weights[c] / len(nets[c])``, summed over the candidates sharing it (the
    reference network is also an ensemble member). Networks of zero-weight candidates are left out; the weights
    sum to 1 when ``weights`` do."""
    out: dict[Hashable, float] = {}
    for w, members in zip(weights, nets, strict=True):
        if w <= 0:
            continue
        for key in members:
            out[key] = out.get(key, 0.0) + float(w) / len(members)
    return out


def weighted_candidate(
    cands: Sequence[Any],
    val_outputs: Sequence[np.ndarray],
    y_val: np.ndarray,
    task: Task,
    *,
    rounds: int = ROUNDS,
    max_params: int | None = None,
    init: Mapping[str, int] | None = None,
) -> Any | None:
    """The weighted ensemble of squeeze's candidates (:class:`recipe.squeeze.candidates.Squeezed`, scored on the
    val split), as one more :class:`~recipe.squeeze.candidates.Squeezed` named ``weighted``: its networks are
    those of the candidates chosen (each network once, with its config), its ``weights`` those of
    :func:`net_weights`. ``val_outputs``: each candidate's val outputs as :func:`ensemble_outputs` returns them
    (log probabilities, or predictions); ``init``: candidate name -> how often it enters before the greedy rounds
    (names not among ``cands`` are ignored). None when there are no candidates or none fits ``max_params``."""
    from recipe.squeeze.candidates import Squeezed

    if not cands:
        return None
    outs = [np.exp(o) if task.classifier else np.asarray(o) for o in val_outputs]
    nets = [{id(n): sum(p.numel() for p in n.parameters()) for n in c.nets} for c in cands]
    try:
        start = {i: (init or {}).get(c.name, 0) for i, c in enumerate(cands)}
        w = ensemble_selection(
            outs, np.asarray(y_val), task, rounds=rounds, nets=nets, max_params=max_params, init=start
        )
    except ValueError:  # no candidate fits max_params
        return None
    per_net = net_weights(w, [[id(n) for n in c.nets] for c in cands])
    by_id = {id(n): (n, cfg) for c in cands for n, cfg in zip(c.nets, c.cfgs, strict=True)}
    keys = list(per_net)
    parts = ", ".join(f"{c.name} {x:.2f}" for c, x in sorted(zip(cands, w), key=lambda t: -t[1]) if x > 0)
    started = ", ".join(f"{n} x{k}" for n, k in (init or {}).items() if k and any(c.name == n for c in cands))
    how = f"{rounds} rounds on the val loss" + (f" after starting from {started}" if started else "")
    return Squeezed(
        "weighted",
        f"weighted ensemble (ensemble selection, Caruana et al. 2004: {how}): {parts}",
        [by_id[k][0] for k in keys],
        [by_id[k][1] for k in keys],
        weights=[per_net[k] for k in keys],
    )
