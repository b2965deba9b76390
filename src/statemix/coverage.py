"""Which of the paper's claims a grid can confirm at all, once every one of its runs has finished.

    python -m statemix.coverage paper

The claims' own rules (statemix.claims) run on an oracle summary of the grid as cut: every cell finished with
the seeds the grid gives it, and accuracies for which every claim holds (BD-LRU and H-LRU near 1 and above
every baseline, rising with m by less each step, H-LRU the smallest model, softmax above the other gate
normalisations). A claim that still comes out inconclusive can never be confirmed by this grid, whatever its
runs learn (at most refuted): a cell it needs is not in the grid, or has fewer than `claims.MIN_SEEDS` seeds.
C6 reads the throughput tables, not the grid. The report prints this beside the verdicts, so "inconclusive:
not run yet" and "inconclusive: this grid cannot tell" read differently.
"""
from __future__ import annotations

import argparse
import re
import sys

import pandas as pd

from statemix import claims, grids

HEADER = ("claim", "can be confirmed once every run finishes", "what stops it")
BLOCKERS = ("missing", "few seeds", "chance", "fewer than two", "no real gain")


def _family_m(arch: str) -> int | None:
    m = re.match(r"^(hlru|bdlru)-m(\d+)$", arch)
    return int(m[2]) if m else None


def _oracle_acc(arch: str, variant: str) -> float:
    """H-LRU / BD-LRU at 1 - 0.05/m (gains shrink with m, m >= 2 solves), every other arch 0.5; a gate
    normalisation other than softmax 0.2 lower."""
    m = _family_m(arch)
    acc = 1.0 - 0.05 / m if m else 0.5
    return acc - 0.2 if variant not in (grids.BASE_VARIANT, "softmax") else acc


def oracle_summary(grid: grids.Grid) -> pd.DataFrame:
    """One row per task x arch x variant x width of the grid's runs, in statemix.aggregate.summarise's columns."""
    cells = {}
    for run in grid.runs.values():
        key = (run.task, run.arch, run.variant, run.width)
        row = cells.setdefault(key, {
            "task": run.task, "task_name": run.task_name, "arch": run.arch, "variant": run.variant,
            "width": run.width, "state_size": run.width, "seeds": 0, "failed": 0,
            "params_total": run.width if run.arch.startswith("hlru-") else 1000 * run.width,
            "diverged": 0, "acc_mean": _oracle_acc(run.arch, run.variant),
            "sections": ",".join(sorted({grid.spec["studies"][st]["section"] for st in run.studies}))})
        row["seeds"] += 1
    table = pd.DataFrame(list(cells.values()))
    if table.empty:
        return table
    table["acc_std"] = table["seeds"].map(lambda n: 0.0 if n >= claims.MIN_SEEDS else float("nan"))
    return table


def _blockers(rows) -> str:
    """The comparisons that stop a verdict, by reason, with the tasks they share folded together:
    'few seeds: BD-LRU vs gdn / lstm on S3, S5; missing: ...'."""
    by: dict = {}
    for row in rows:
        reason = next((w for w in BLOCKERS if w in str(row[-1])), None)
        if reason:
            task, _, what = re.sub(r" \([^)]*\)", "", str(row[0])).rpartition(": ")
            by.setdefault(reason, {}).setdefault(what, []).append(task)
    parts = []
    for reason, whats in by.items():
        folded: dict = {}
        for what, tasks in whats.items():
            folded.setdefault(tuple(t for t in tasks if t), []).append(what)
        parts.append(f"{reason}: " + "; ".join(" / ".join(w) + (f" on {', '.join(t)}" if t else "")
                                               for t, w in folded.items()))
    return "; ".join(parts)


def coverage(grid: grids.Grid) -> list[list[str]]:
    """[claim, yes/no, the comparisons that stop it] for C1-C5 on the grid as cut."""
    summary = oracle_summary(grid)
    rows = []
    for rule in (claims.c1, claims.c2, claims.c3, claims.c4, claims.c5):
        if summary.empty:
            rows.append([rule.__name__.upper(), "no", "the grid has no runs"])
            continue
        v = rule(grid, summary)
        why = _blockers(v.rows) or ("no cell of this grid bears on it" if v.verdict == "inconclusive" else "–")
        rows.append([v.claim.split(":")[0], "yes" if v.verdict == "confirmed" else "no", why])
    return rows


def section(grid: grids.Grid) -> str:
    """Markdown: the coverage table with a line on how it was computed."""
    return ("What this grid can confirm once all of its runs have finished (`python -m statemix.coverage "
            f"{grid.name}`: the claims' rules on an oracle summary of the grid as cut, in which every claim holds; "
            "a 'no' can at most be refuted by this grid, whatever its runs learn):\n\n"
            + claims._table(HEADER, coverage(grid)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m statemix.coverage", description=__doc__.splitlines()[0])
    p.add_argument("grid", help="a grid name in params/grids/ or a path to a grid YAML")
    args = p.parse_args(argv)
    try:
        grid = grids.load(args.grid)
    except (ValueError, FileNotFoundError) as err:
        print(f"statemix.coverage: error: {err}", file=sys.stderr)
        return 2
    print(section(grid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
