"""Figures as every benchmark reports them: medians of runs with their min-max.

summary([1.0, 2.0, 3.0])        # {"median": 2.0, "min": 1.0, "max": 3.0}
print_figures("etcd", figures)  # one aligned line per figure
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median with the min-max of the runs: the shape every figure in the report has."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize_runs(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """One summary per key of runs that all carry the same keys."""
    return {key: summary([run[key] for run in runs]) for key in runs[0]}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_figures(
    title: str,
    figures: Mapping[str, Mapping[str, float]],
    runs: int,
    targets: Mapping[str, str] | None = None,
    unit: str = "",
) -> None:
    """`title, median of N run(s) [min-max]:` then one aligned line per figure."""
    print(f"\n{title}, median of {runs} run(s) [min-max]:")
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        target = f"  target {targets[key]}" if targets and targets.get(key) else ""
        print(
            f"  {key:{width}s} {value['median']:10.2f}{unit}  "
            f"[{value['min']:.2f}-{value['max']:.2f}]{target}"
        )
