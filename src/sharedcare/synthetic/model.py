"""The calibrated population model: who lives where, how old they are, and what they have.

Everything observed comes from ``sharedcare.reference`` (LSOA populations and IMD, practice list
sizes by age group, QOF prevalence). Where the reference data are silent the model makes a
stated assumption, listed in ``docs/explanation/synthetic-dorset.md``:

* the split of the 65+ list into 65–74, 75–84 and 85+ (``OVER_65_SPLIT``);
* the male share by age band (``MALE_SHARE``), from the usual shape of England's population;
* the shape of each condition's prevalence by age band and the male:female ratio
  (``CONDITION_SHAPES``). Each shape is then scaled so that the expected prevalence in each
  local authority equals its QOF 2019/20 prevalence, and multiplied by the South West's crude
  prevalence ratio for the person's IMD decile.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cache

from sharedcare import reference
from sharedcare.synthetic.geography import area_geography

AGE_BANDS: tuple[tuple[int, int], ...] = (
    (0, 15),
    (16, 16),
    (17, 17),
    (18, 29),
    (30, 49),
    (50, 64),
    (65, 74),
    (75, 84),
    (85, 100),
)
"""Single-year age bands (inclusive) that the practice list sizes are resolved into."""

OVER_65_SPLIT = (0.52, 0.33, 0.15)
"""Assumed shares of the 65+ list aged 65–74, 75–84 and 85+ (not in the reference data)."""

MALE_SHARE = (0.512, 0.512, 0.512, 0.51, 0.495, 0.49, 0.48, 0.45, 0.36)
"""Assumed male share in each of ``AGE_BANDS`` (the reference data have no sex split)."""

PREVALENCE_BANDS = (18, 40, 50, 60, 70, 80)
"""Lower bounds of the prevalence age bands after 0–17: 18–39, 40–49, …, 80+."""

# group: (relative prevalence in 0-17, 18-39, 40-49, 50-59, 60-69, 70-79, 80+; male:female ratio;
#         minimum age of the QOF denominator)
CONDITION_SHAPES: dict[str, tuple[tuple[float, ...], float, int]] = {
    "HYP": ((0.0, 0.02, 0.08, 0.18, 0.32, 0.48, 0.60), 1.05, 0),
    "DM": ((0.002, 0.015, 0.05, 0.09, 0.13, 0.17, 0.16), 1.25, 17),
    "AST": ((0.06, 0.07, 0.06, 0.06, 0.065, 0.07, 0.065), 0.85, 0),
    "COPD": ((0.0, 0.001, 0.006, 0.02, 0.045, 0.075, 0.08), 1.05, 0),
    "CHD": ((0.0, 0.001, 0.008, 0.03, 0.07, 0.12, 0.17), 1.6, 0),
    "STIA": ((0.0, 0.001, 0.005, 0.012, 0.03, 0.06, 0.10), 1.1, 0),
    "AF": ((0.0, 0.001, 0.003, 0.01, 0.035, 0.08, 0.15), 1.3, 0),
    "HF": ((0.0, 0.0005, 0.002, 0.006, 0.015, 0.035, 0.08), 1.35, 0),
    "CKD": ((0.0, 0.002, 0.008, 0.025, 0.07, 0.17, 0.33), 0.8, 18),
    "DEM": ((0.0, 0.0, 0.0005, 0.002, 0.008, 0.04, 0.16), 0.7, 0),
    "DEP": ((0.0, 0.12, 0.13, 0.13, 0.11, 0.09, 0.08), 0.6, 18),
    "MH": ((0.0005, 0.01, 0.012, 0.012, 0.011, 0.01, 0.009), 1.1, 0),
    "CAN": ((0.001, 0.004, 0.015, 0.035, 0.07, 0.11, 0.13), 0.95, 0),
    "LD": ((0.006, 0.006, 0.005, 0.005, 0.004, 0.003, 0.002), 1.4, 0),
}

MAX_PROBABILITY = 0.95


def prevalence_band(age: int) -> int:
    """Index of ``age`` in the prevalence bands (0 = 0–17 … 6 = 80+)."""
    return bisect.bisect_right(PREVALENCE_BANDS, age)


def age_band(age: int) -> int:
    """Index of ``age`` in ``AGE_BANDS``."""
    for i, (lo, hi) in enumerate(AGE_BANDS):
        if lo <= age <= hi:
            return i
    return len(AGE_BANDS) - 1


def practice_band_counts(p: reference.GpPractice) -> tuple[float, ...]:
    """Resolve a practice's overlapping QOF list groups into ``AGE_BANDS`` counts.

    0–15, 16, 17, 50–64 and 65+ follow exactly from the list groups. 65+ is split with
    ``OVER_65_SPLIT``; 30–49 is then 30–74 minus 50–64 minus 65–74, and 18–29 the rest of 18–49.
    """
    over65 = p.list_65ov
    a65, a75, a85 = (over65 * s for s in OVER_65_SPLIT)
    a50 = p.list_50ov - over65
    a18_49 = p.list_18ov - p.list_50ov
    a30 = min(max(p.list_30_74 - a50 - a65, 0.0), float(a18_49))
    return (
        float(p.list_total - p.list_16ov),
        float(p.list_16ov - p.list_17ov),
        float(p.list_17ov - p.list_18ov),
        a18_49 - a30,
        a30,
        float(a50),
        a65,
        a75,
        a85,
    )


def _single_year_weights() -> list[tuple[int, float]]:
    """Relative weight of each single year of age inside its band (85+ declines)."""
    out: list[tuple[int, float]] = []
    for lo, hi in AGE_BANDS:
        if lo < 85:
            out.extend((a, 1.0 / (hi - lo + 1)) for a in range(lo, hi + 1))
        else:
            raw = [0.84 ** (a - 85) for a in range(lo, hi + 1)]
            total = sum(raw)
            out.extend((a, r / total) for a, r in zip(range(lo, hi + 1), raw, strict=True))
    return out


@dataclass(frozen=True, slots=True)
class PracticeModel:
    """Sampling tables for one practice."""

    code: str
    age_cumulative: tuple[float, ...]
    """Cumulative probability over single years 0..100."""


@dataclass(frozen=True, slots=True)
class PopulationModel:
    """Everything the per-person generator looks up, built once per process."""

    practices: tuple[PracticeModel, ...]
    age_cumulative: tuple[float, ...]
    """Cumulative single-year age distribution of all practices' lists combined."""
    overall_band_share: tuple[float, ...]
    """Share of the practices' combined list in each of ``AGE_BANDS`` (the calibration target)."""
    condition_scale: dict[tuple[str, str], float]
    """(group, LAD code) → multiplier applied to the shape."""
    imd_ratio: dict[tuple[str, int], float]
    """(group, IMD decile) → South West crude prevalence ratio to the regional mean."""
    qof_target: dict[tuple[str, str], float]
    """(group, LAD code) → QOF 2019/20 prevalence (fraction)."""


def _age_cumulative(bands: tuple[float, ...]) -> tuple[float, ...]:
    total = sum(bands)
    year_w = _single_year_weights()
    probs = [0.0] * 101
    for age, w in year_w:
        probs[age] = bands[age_band(age)] / total * w
    cumulative: list[float] = []
    acc = 0.0
    for p in probs:
        acc += p
        cumulative.append(acc)
    return tuple(c / acc for c in cumulative)


def _single_year_distribution(bands: tuple[float, ...]) -> list[float]:
    cumulative = _age_cumulative(bands)
    return [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, 101)]


def condition_probability(
    model: PopulationModel, group: str, age: int, male: bool, decile: int, lad: str
) -> float:
    """Probability that a person has ``group`` at the census date."""
    shape, male_ratio, min_age = CONDITION_SHAPES[group]
    if age < min_age:
        return 0.0
    sex = 2 * male_ratio / (1 + male_ratio) if male else 2 / (1 + male_ratio)
    p = (
        shape[prevalence_band(age)]
        * sex
        * model.imd_ratio[(group, decile)]
        * model.condition_scale[(group, lad)]
    )
    return min(p, MAX_PROBABILITY)


@cache
def population_model() -> PopulationModel:
    """Build and calibrate the model from the packaged reference data."""
    practices = reference.gp_practices()
    band_counts = [practice_band_counts(p) for p in practices]
    overall = tuple(sum(b[i] for b in band_counts) for i in range(len(AGE_BANDS)))
    total = sum(overall)
    overall_share = tuple(x / total for x in overall)
    practice_models = tuple(
        PracticeModel(p.code, _age_cumulative(b))
        for p, b in zip(practices, band_counts, strict=True)
    )

    by_imd = reference.qof_prevalence_by_imd()
    imd_ratio: dict[tuple[str, int], float] = {}
    for group in CONDITION_SHAPES:
        rows = [r for r in by_imd if r.group_code == group]
        mean = sum(r.register for r in rows) / sum(r.list_size for r in rows)
        for r in rows:
            imd_ratio[(group, r.imd_decile)] = r.prevalence / mean

    qof_target = {(r.group_code, r.lad_code): r.prevalence for r in reference.qof_prevalence()}
    # Expected age mix and IMD mix of each local authority's residents, given where they live
    # and which practices they register with (the same weights the generator uses).
    geo = area_geography()
    lad_bands: dict[str, list[float]] = {}
    decile_share: dict[str, dict[int, float]] = {}
    for area in reference.lsoas():
        d = decile_share.setdefault(area.lad_code, {})
        d[area.imd2019_decile] = d.get(area.imd2019_decile, 0.0) + area.population_mid2019
        bands = lad_bands.setdefault(area.lad_code, [0.0] * len(AGE_BANDS))
        previous = 0.0
        for k, c in enumerate(geo[area.code].practice_cumulative):
            weight = (c - previous) * area.population_mid2019
            previous = c
            counts = band_counts[k]
            size = sum(counts)
            for i, n in enumerate(counts):
                bands[i] += weight * n / size
    lad_age_dist = {lad: _single_year_distribution(tuple(b)) for lad, b in lad_bands.items()}

    overall_cumulative = _age_cumulative(overall)
    unit = PopulationModel(
        practice_models, overall_cumulative, overall_share, {}, imd_ratio, qof_target
    )
    scale: dict[tuple[str, str], float] = {}
    for lad, deciles in decile_share.items():
        pop = sum(deciles.values())
        age_dist = lad_age_dist[lad]
        for group, (_, _, min_age) in CONDITION_SHAPES.items():
            for g in CONDITION_SHAPES:
                unit.condition_scale[(g, lad)] = 1.0
            expected = 0.0
            denominator = 0.0
            for age in range(min_age, 101):
                male_share = MALE_SHARE[age_band(age)]
                for decile, n in deciles.items():
                    w = age_dist[age] * n / pop
                    denominator += w
                    expected += w * (
                        male_share * condition_probability(unit, group, age, True, decile, lad)
                        + (1 - male_share)
                        * condition_probability(unit, group, age, False, decile, lad)
                    )
            scale[(group, lad)] = qof_target[(group, lad)] / (expected / denominator)
    return PopulationModel(
        practice_models, overall_cumulative, overall_share, scale, imd_ratio, qof_target
    )
