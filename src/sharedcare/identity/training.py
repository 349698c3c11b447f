"""Estimating the model from unlabelled records: u from random pairs, m by EM.

The approach follows the usual Fellegi–Sunter practice (as in Splink):

* **u** — the chance of each level among non-matches — is measured on pairs drawn at
  random, which are almost all non-matches. Levels too rare to be seen in the sample
  (an exact NHS number, an exact date of birth) keep their prior u.
* **m** — the chance among matches — is estimated by expectation–maximisation on the
  pairs found by one blocking rule at a time, with u held fixed. A rule selects pairs for
  agreeing on some fields, so m for those fields is not learnt from that rule; each
  field's m is the average over the rules that leave it free.

The prior (share of pairs that match) is context-specific and left as it was; thresholds
are not changed either.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sharedcare.identity.blocking import RULES, blocking_keys
from sharedcare.identity.compare import COMPARISONS, LEVELS, Features, compare
from sharedcare.identity.model import FieldParameters, MatchModel

__all__ = ["TrainingReport", "blocked_vectors", "em", "estimate_u", "train"]

_MIN_SEEN = 5


@dataclass(slots=True)
class TrainingReport:
    """What training did: pair counts, EM iterations and prior per rule."""

    u_pairs: int = 0
    rules: dict[str, dict[str, float]] = field(default_factory=dict)


def estimate_u(
    left: Sequence[Features],
    right: Sequence[Features] | None,
    base: MatchModel,
    *,
    pairs: int = 100_000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Estimate u per field and level from random pairs.

    Args:
        left: Records' features.
        right: Other side for linking two sets; ``None`` pairs ``left`` with itself.
        base: Model whose u is kept for levels seen fewer than five times.
        pairs: Number of random pairs to draw.
        seed: Random seed (results are reproducible).
    """
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    other = left if right is None else right
    counts = [[0] * len(LEVELS[name]) for name in COMPARISONS]
    drawn = 0
    if len(left) and len(other) and (right is not None or len(left) > 1):
        for _ in range(pairs):
            i = rng.randrange(len(left))
            j = rng.randrange(len(other))
            if right is None and i == j:
                continue
            for k, level in enumerate(compare(left[i], other[j])):
                counts[k][level] += 1
            drawn += 1
    out: dict[str, list[float]] = {}
    for k, name in enumerate(COMPARISONS):
        prior_u = base.fields[name].u
        seen = sum(counts[k][1:])
        u = [1.0]
        for level in range(1, len(LEVELS[name])):
            c = counts[k][level]
            u.append(c / seen if seen and c >= _MIN_SEEN else prior_u[level])
        total = sum(u[1:])
        out[name] = [1.0] + [x / total for x in u[1:]]
    return out


def blocked_vectors(
    left: Sequence[Features],
    right: Sequence[Features] | None,
    rule: str,
    *,
    max_bucket: int = 200,
    max_pairs: int = 200_000,
) -> Counter[tuple[int, ...]]:
    """Comparison vectors (with counts) of the pairs that share a key of one rule.

    Buckets larger than ``max_bucket`` on either side are skipped and at most
    ``max_pairs`` pairs are compared.
    """
    buckets: dict[str, tuple[list[int], list[int]]] = {}
    for i, f in enumerate(left):
        for key in blocking_keys(f, [rule]):
            buckets.setdefault(key, ([], []))[0].append(i)
    if right is not None:
        for j, f in enumerate(right):
            for key in blocking_keys(f, [rule]):
                if key in buckets:
                    buckets[key][1].append(j)
    counts: Counter[tuple[int, ...]] = Counter()
    n = 0
    for a_side, b_side in buckets.values():
        if len(a_side) > max_bucket or len(b_side) > max_bucket:
            continue
        if right is None:
            pairs = ((a, b) for x, a in enumerate(a_side) for b in a_side[x + 1 :])
            other = left
        else:
            pairs = ((a, b) for a in a_side for b in b_side)
            other = right
        for a, b in pairs:
            counts[compare(left[a], other[b])] += 1
            n += 1
            if n >= max_pairs:
                return counts
    return counts


def em(
    vectors: Counter[tuple[int, ...]],
    m: dict[str, list[float]],
    u: dict[str, list[float]],
    prior: float,
    *,
    fixed: Sequence[str] = (),
    iterations: int = 40,
    tolerance: float = 1e-5,
) -> tuple[dict[str, list[float]], float, int]:
    """Expectation–maximisation of m (and the in-block prior) with u held fixed.

    Args:
        vectors: Comparison vectors with their counts.
        m: Starting m per field.
        u: Fixed u per field.
        prior: Starting share of matches among these pairs.
        fixed: Fields the blocking rule constrains: their m is not re-estimated and
            they are left out of the match posterior.
        iterations: Most iterations to run.
        tolerance: Stop when no m or the prior moves by more than this.

    Returns:
        New m per field, the in-block prior, and the iterations run.
    """
    m = {k: list(v) for k, v in m.items()}
    # Fields the blocking rule constrains agree by construction, so they say nothing
    # about which pairs match here: leave them out of the posterior (as Splink does).
    free = [k for k, name in enumerate(COMPARISONS) if name not in fixed]
    items = list(vectors.items())
    total = sum(vectors.values())
    if total == 0:
        return m, prior, 0
    run = 0
    for run in range(1, iterations + 1):  # noqa: B007 - run is reported
        acc = {name: [0.0] * len(LEVELS[name]) for name in COMPARISONS}
        matched = 0.0
        for vector, count in items:
            pm = prior
            pu = 1.0 - prior
            for k in free:
                level = vector[k]
                if level:
                    name = COMPARISONS[k]
                    pm *= m[name][level]
                    pu *= u[name][level]
            p = pm / (pm + pu) if pm + pu > 0 else 0.0
            weight = p * count
            matched += weight
            for k, level in enumerate(vector):
                acc[COMPARISONS[k]][level] += weight
        moved = abs(matched / total - prior)
        prior = min(max(matched / total, 1e-9), 1 - 1e-9)
        for name in COMPARISONS:
            if name in fixed:
                continue
            seen = sum(acc[name][1:])
            if seen <= 0:
                continue
            levels = len(LEVELS[name]) - 1
            new = [1.0] + [(x + 1e-3) / (seen + 1e-3 * levels) for x in acc[name][1:]]
            moved = max(moved, *(abs(a - b) for a, b in zip(new[1:], m[name][1:], strict=True)))
            m[name] = new
        if moved < tolerance:
            break
    return m, prior, run


def train(
    left: Sequence[Features],
    right: Sequence[Features] | None = None,
    base: MatchModel | None = None,
    *,
    rules: Sequence[str] = ("dob", "names", "place"),
    u_pairs: int = 100_000,
    seed: int = 0,
) -> tuple[MatchModel, TrainingReport]:
    """Estimate u and m from records and return a new model (thresholds unchanged).

    Args:
        left: Records' features.
        right: Other side for linking; ``None`` to train on ``left`` alone (dedupe).
        base: Starting model; the default when omitted.
        rules: Blocking rules used for EM, one EM run each.
        u_pairs: Random pairs for u.
        seed: Random seed.
    """
    base = base or MatchModel.default()
    report = TrainingReport(u_pairs=u_pairs)
    u = estimate_u(left, right, base, pairs=u_pairs, seed=seed)
    start_m = {name: list(base.fields[name].m) for name in COMPARISONS}
    learnt: dict[str, list[list[float]]] = {name: [] for name in COMPARISONS}
    constrains = {r.name: r.constrains for r in RULES}
    for rule in rules:
        vectors = blocked_vectors(left, right, rule)
        m, block_prior, runs = em(vectors, start_m, u, 0.1, fixed=constrains[rule])
        report.rules[rule] = {
            "pairs": float(sum(vectors.values())),
            "iterations": float(runs),
            "block_prior": block_prior,
        }
        for name in COMPARISONS:
            if name not in constrains[rule] and vectors:
                learnt[name].append(m[name])
    fields = {}
    for name in COMPARISONS:
        if learnt[name]:
            m_avg = [sum(col) / len(col) for col in zip(*learnt[name], strict=True)]
        else:
            m_avg = start_m[name]
        fields[name] = FieldParameters(name, m_avg, u[name])
    model = MatchModel(
        fields=fields,
        prior=base.prior,
        auto_link_weight=base.auto_link_weight,
        review_weight=base.review_weight,
        tf_fields=base.tf_fields,
        tf_minimum=base.tf_minimum,
        tf_max_adjustment=base.tf_max_adjustment,
        no_auto_link=dict(base.no_auto_link),
    )
    return model, report
