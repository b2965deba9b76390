"""The paper's claims C1-C6, each answered confirmed / refuted / inconclusive from the run summary and the
throughput tables, by the explicit rules below (RULES is printed into the report verbatim).

Input is the per-cell summary of statemix.aggregate.summarise (one row per task x arch x variant x width,
mean / std over seeds). An architecture's cell on a task is its best width by mean accuracy. Two cells are
compared with a margin of max(TIE, std of either): within it they match, beyond it one beats the other.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from statemix import grids

TIE = 0.01
MIN_SEEDS = 2
UNINFORMATIVE = ("few seeds", "unfinished seeds")
"""compare()'s outcomes that are no evidence either way."""
CHANCE_MARGIN = 0.1
SOLVED = 0.9
MODERATE = (2, 3, 4)
COMPETITIVE = 0.5
MAD_TASKS = ("in-context-recall", "fuzzy-in-context-recall", "noisy-in-context-recall", "selective-copying",
             "compression", "memorization")
BASELINES = {"Mamba2": ("mamba2",), "Gated DeltaNet": ("gdn",), "DeltaProduct": ("dproduct", "dproduct-h4"),
             "LSTM": ("lstm",)}
FIG1 = ("main", "extra")

RULES = f"""\
- A cell is an architecture's best width on a task (base variant, sections {', '.join(FIG1)} unless said
  otherwise), as mean ± std over its finished seeds (n). A cell with n < {MIN_SEEDS} cannot be compared, nor can
  one whose grid seeds have not all finished ("n=2 of 3"): early stopping finishes the seeds that learn first,
  so a part of a cell is a biased sample of it.
- A matches B when |mean A − mean B| ≤ max({TIE}, std A, std B); A beats B when it is higher by more than that.
- A task is at chance when every compared cell's mean is below 1/vocab + {CHANCE_MARGIN}; it gives no evidence.
- Every claim: **refuted** if any informative comparison contradicts it, **confirmed** if every comparison it
  needs exists, is informative and agrees, **inconclusive** otherwise (missing cells, too few seeds, chance).
- C1: BD-LRU is the best bdlru-m* cell; it must match or beat each baseline's best cell on each MAD task.
- C2: at each accuracy threshold of the grid reached by at least two architectures (all sections, base
  variant), the fewest whole-model parameters reaching it must belong to H-LRU (hlru-m2 and up).
- C3: per family and task of the order study, the gain m=1→2 must be ≥ every later gain m→m+1, and a real
  gain (beyond the margin); a later step larger than it by more than the margin contradicts the claim.
- C4: on S3, S4, S5 the best BD-LRU cell with m in {MODERATE} must reach mean ≥ {SOLVED} (solved) and beat
  each baseline's best cell.
- C5: per task and arch of the normalisation study, softmax must have no failed or diverged run and match or beat every
  other normalisation; relu must be worse (a failed or diverged run, or beaten by softmax).
- C6: in the layer throughput table, every H-LRU / BD-LRU layer with m in {MODERATE} must reach at least
  {COMPETITIVE}× the tokens/s of the diagonal (m=1) layer in the same dtype."""


@dataclass(frozen=True)
class Cell:
    label: str
    mean: float
    std: float
    n: int
    planned: int | None = None
    """Runs the grid has for the cell; None where unknown (taken as all finished)."""
    finished: int | None = None
    """Runs of the cell that have finished, ok or failed."""

    @property
    def unfinished(self) -> bool:
        return self.planned is not None and self.finished is not None and self.finished < self.planned

    def __str__(self) -> str:
        std = "" if self.std is None or math.isnan(self.std) else f" ± {self.std:.3f}"
        return f"{self.mean:.3f}{std} (n={self.n}{f' of {self.planned}' if self.unfinished else ''})"


def _row_cell(r, label: str) -> Cell:
    """A Cell from a summary row (Series or itertuples row)."""
    planned = getattr(r, "planned", None)
    planned = None if planned is None or pd.isna(planned) else int(planned)
    return Cell(label, float(r.acc_mean), float(r.acc_std), int(r.seeds - r.failed), planned, int(r.seeds))


@dataclass
class Verdict:
    claim: str
    verdict: str
    why: str
    rows: list
    header: tuple = ("comparison", "numbers", "outcome")


def _margin(a: Cell, b: Cell) -> float:
    return max(TIE, *(s for s in (a.std, b.std) if s is not None and not math.isnan(s)))


def compare(a: Cell, b: Cell) -> str:
    """'beats', 'matches' or 'loses' (a against b), or why they cannot be compared (UNINFORMATIVE)."""
    if min(a.n, b.n) < MIN_SEEDS:
        return "few seeds"
    if a.unfinished or b.unfinished:
        return "unfinished seeds"
    diff = a.mean - b.mean
    return "matches" if abs(diff) <= _margin(a, b) else ("beats" if diff > 0 else "loses")


def _cells(summary: pd.DataFrame) -> pd.DataFrame:
    ok = summary.dropna(subset=["acc_mean"])
    return ok.loc[ok.groupby(["task", "arch", "variant"])["acc_mean"].idxmax()] if len(ok) else ok


def _cell(rows: pd.DataFrame, label: str) -> Cell | None:
    if rows.empty:
        return None
    return _row_cell(rows.loc[rows["acc_mean"].idxmax()], label)


def _sections(summary: pd.DataFrame, sections) -> pd.DataFrame:
    return summary[summary["sections"].str.split(",").map(lambda s: bool(set(s) & set(sections)))]


def chance(grid: grids.Grid, task: str) -> float:
    """1 / vocabulary of a task instance (its group order for permutations); 0 when unknown."""
    from statemix.tasks import resolve_params

    inst = grid.spec["tasks"].get(task, {})
    params = resolve_params(inst.get("task", task), **inst.get("params", {})) if inst else {}
    if "group" in params:
        return 1 / math.factorial(int(str(params["group"])[1:]))
    return 1 / params["vocab_size"] if params.get("vocab_size") else 0.0


def _at_chance(grid, task, cells) -> bool:
    return all(c.mean < chance(grid, task) + CHANCE_MARGIN for c in cells)


def _decide(outcomes: list, complete: bool) -> str:
    if "contradicts" in outcomes:
        return "refuted"
    return "confirmed" if complete and outcomes and all(o == "agrees" for o in outcomes) else "inconclusive"


def _versus(grid, task, mine: Cell | None, others: dict, needed: tuple) -> tuple[list, list, bool]:
    """Rows and outcomes of `mine` against each baseline cell (None = missing); `needed` outcomes agree."""
    rows, outcomes, complete = [], [], mine is not None
    for name, other in others.items():
        if mine is None or other is None:
            rows.append([f"{task}: {mine.label if mine else 'BD-LRU'} vs {name}", f"{mine or '–'} vs {other or '–'}",
                         "missing"])
            complete = False
            continue
        if _at_chance(grid, task, [mine, other]):
            rows.append([f"{task}: {mine.label} vs {other.label}", f"{mine} vs {other}", "at chance"])
            complete = False
            continue
        c = compare(mine, other)
        outcome = "agrees" if c in needed else (c if c in UNINFORMATIVE else "contradicts")
        complete &= c not in UNINFORMATIVE
        outcomes.append(outcome)
        rows.append([f"{task}: {mine.label} vs {other.label}", f"{mine} vs {other}",
                     c if c == outcome else f"{c} ({outcome})"])
    return rows, outcomes, complete


def _family_cell(cells: pd.DataFrame, task: str, pattern: str, label: str, ms=None) -> Cell | None:
    rows = cells[cells["task"].eq(task) & cells["arch"].str.match(pattern)]
    if ms is not None:
        rows = rows[rows["arch"].str.extract(r"m(\d+)$")[0].astype(float).isin(ms)]
    best = _cell(rows, label)
    return best and replace(best, label=f"{label} ({rows.loc[rows['acc_mean'].idxmax(), 'arch']})")


def _baselines(cells: pd.DataFrame, task: str) -> dict:
    out = {}
    for name, archs in BASELINES.items():
        rows = cells[cells["task"].eq(task) & cells["arch"].isin(archs)]
        out[name] = _cell(rows, rows.loc[rows["acc_mean"].idxmax(), "arch"]) if len(rows) else None
    return out


def c1(grid, summary) -> Verdict:
    cells = _cells(_sections(summary, FIG1))
    cells = cells[cells["variant"].eq(grids.BASE_VARIANT)]
    tasks = [t for t, inst in grid.spec["tasks"].items() if inst["task"] in MAD_TASKS]
    rows, outcomes, complete = [], [], bool(tasks)
    for task in tasks:
        r, o, c = _versus(grid, task, _family_cell(cells, task, r"^bdlru-m\d+$", "BD-LRU"), _baselines(cells, task),
                          ("beats", "matches"))
        rows, outcomes, complete = rows + r, outcomes + o, complete and c
    return Verdict("C1: BD-LRU matches or beats Mamba2, Gated DeltaNet, DeltaProduct and LSTM on the MAD tasks",
                   _decide(outcomes, complete), f"{outcomes.count('agrees')} of {len(rows)} comparisons agree, "
                   f"{outcomes.count('contradicts')} contradict", rows)


def c2(grid, summary) -> Verdict:
    rows = summary[summary["task_name"].eq("compression") & summary["variant"].eq(grids.BASE_VARIANT)].dropna(
        subset=["acc_mean"])
    out, outcomes, complete = [], [], True
    for t in grid.spec["report"]["thresholds"]:
        hit = rows[(rows["acc_mean"] >= t) & (rows["seeds"] - rows["failed"] >= MIN_SEEDS)
                   & (rows["seeds"] >= rows.get("planned", rows["seeds"]))]
        fewest = hit.sort_values("params_total").drop_duplicates("arch")
        if fewest["arch"].nunique() < 2:
            out.append([f"acc ≥ {t}", ", ".join(fewest["arch"]) or "no architecture", "fewer than two reach it"])
            continue
        top = fewest.iloc[0]
        hlru = bool(re.match(r"^hlru-m([2-9]|\d\d)", top["arch"]))
        outcomes.append("agrees" if hlru else "contradicts")
        runner = fewest.iloc[1]
        out.append([f"acc ≥ {t}", f"{top['arch']} w{top['width']}: {int(top['params_total']):,} params "
                    f"({top['acc_mean']:.3f}); next {runner['arch']}: {int(runner['params_total']):,}",
                    "agrees" if hlru else "contradicts"])
    complete = bool(outcomes) and complete
    return Verdict("C2: H-LRU is the most parameter-efficient on compression", _decide(outcomes, complete),
                   "fewest whole-model parameters whose mean accuracy reaches each threshold", out,
                   ("threshold", "fewest parameters", "outcome"))


def c3(grid, summary) -> Verdict:
    rows = _cells(_sections(summary, ("order",)))
    rows = rows[rows["arch"].str.match(r"^(hlru|bdlru)-m\d+$")]
    out, outcomes, complete = [], [], not rows.empty
    for (task, fam), fam_rows in rows.groupby([rows["task"], rows["arch"].str.split("-").str[0]]):
        by_m = {int(r.arch.rsplit("m", 1)[1]): _row_cell(r, r.arch) for r in fam_rows.itertuples()}
        ms = sorted(by_m)
        label = f"{task}: {'H-LRU' if fam == 'hlru' else 'BD-LRU'}"
        if (ms[:2] != [1, 2] or min(c.n for c in by_m.values()) < MIN_SEEDS
                or any(c.unfinished for c in by_m.values()) or _at_chance(grid, task, by_m.values())):
            out.append([label, ", ".join(f"m={m} {by_m[m]}" for m in ms),
                        "m=1 or 2 missing, few or unfinished seeds, or chance"])
            complete = False
            continue
        gains = {m: by_m[m + 1].mean - by_m[m].mean for m in ms[:-1] if m + 1 in by_m}
        first = gains[1]
        worse = [m for m, g in gains.items() if m > 1 and g > first + _margin(by_m[m], by_m[m + 1])]
        real = first > _margin(by_m[1], by_m[2])
        outcome = "contradicts" if worse else ("agrees" if real and first >= max(gains.values()) else "no real gain")
        if outcome == "no real gain":
            complete = False
        else:
            outcomes.append(outcome)
        out.append([label, ", ".join(f"{m}→{m + 1}: {g:+.3f}" for m, g in gains.items()), outcome])
    return Verdict("C3: the largest gain in order / block size is from m=1 to m=2",
                   _decide(outcomes, complete), "gain in mean accuracy per step of m (order study)", out,
                   ("family", "gains", "outcome"))


def c4(grid, summary) -> Verdict:
    cells = _cells(_sections(summary, FIG1))
    cells = cells[cells["variant"].eq(grids.BASE_VARIANT)]
    tasks = [t for t, inst in grid.spec["tasks"].items() if inst["task"] == "permutation"]
    rows, outcomes, complete = [], [], bool(tasks)
    for task in tasks:
        mine = _family_cell(cells, task, r"^bdlru-m\d+$", "BD-LRU", MODERATE)
        if mine is not None and mine.n >= MIN_SEEDS and not mine.unfinished and not _at_chance(grid, task, [mine]):
            solved = mine.mean >= SOLVED
            outcomes.append("agrees" if solved else "contradicts")
            rows.append([f"{task}: {mine.label} solves (≥ {SOLVED})", str(mine), "agrees" if solved else "contradicts"])
        else:
            complete = False
            rows.append([f"{task}: BD-LRU solves", str(mine or "–"), "missing, few or unfinished seeds, or chance"])
        r, o, c = _versus(grid, task, mine, _baselines(cells, task), ("beats",))
        rows, outcomes, complete = rows + r, outcomes + o, complete and c
    return Verdict("C4: BD-LRU solves S3–S5 at moderate block sizes and beats the baselines there",
                   _decide(outcomes, complete), f"m in {MODERATE}", rows)


def c5(grid, summary) -> Verdict:
    rows = _cells(_sections(summary, ("norm",)))
    out, outcomes, complete = [], [], not rows.empty
    for (task, arch), pair in rows.groupby(["task", "arch"]):
        cells = {r.variant: _row_cell(r, r.variant) for r in pair.itertuples()}
        failed = dict(zip(pair["variant"], pair["failed"] + pair.get("diverged", 0)))  # unstable: NaN at any epoch
        soft = cells.get("softmax")
        if soft is None or "relu" not in cells or _at_chance(grid, task, cells.values()):
            out.append([f"{task} {arch}", ", ".join(map(str, cells.values())), "softmax/relu missing or chance"])
            complete = False
            continue
        for name, cell in cells.items():
            if name == "softmax":
                ok = failed[name] == 0
                if ok and cell.unfinished:
                    out.append([f"{task} {arch}: softmax", f"{cell}, 0 failed or diverged so far", "unfinished seeds"])
                    complete = False
                    continue
                out.append([f"{task} {arch}: softmax", f"{cell}, {failed[name]} failed or diverged", "stable" if ok else "unstable"])
                outcomes.append("agrees" if ok else "contradicts")
                continue
            c = compare(soft, cell)
            worse = failed[name] > 0 or c == "beats"
            out.append([f"{task} {arch}: {name}", f"{cell}, {failed[name]} failed or diverged vs softmax {soft}",
                        "worse" if worse else ("softmax loses" if c == "loses" else c)])
            if c in UNINFORMATIVE and failed[name] == 0:
                complete = False
            elif c == "loses":
                outcomes.append("contradicts")
            elif name == "relu":
                outcomes.append("agrees" if worse else "contradicts")
    return Verdict("C5: the L1 (softmax) normalisation is stable; the others (relu in particular) are not",
                   _decide(outcomes, complete), "normalisation study; other variants are listed as worse or not",
                   out, ("cell", "numbers", "outcome"))


def c6(bench_files) -> Verdict:
    files = [f for f in bench_files if Path(f).name.startswith("bench_layer")]
    out, outcomes = [], []
    for f in files:
        df = pd.read_csv(f)
        if not {"layer", "dtype", "tokens_per_s"} <= set(df.columns):
            continue
        df["m"] = df["layer"].str.extract(r"-m(\d+)$")[0].astype(float)
        for dtype, rows in df.groupby("dtype"):
            diag = rows[rows["m"].eq(1)]["tokens_per_s"]
            for r in rows[rows["m"].isin(MODERATE)].itertuples():
                if diag.empty:
                    continue
                ratio = r.tokens_per_s / diag.iloc[0]
                outcomes.append("agrees" if ratio >= COMPETITIVE else "contradicts")
                out.append([f"{r.layer} {dtype}", f"{r.tokens_per_s:,.0f} tokens/s, {ratio:.2f}× m=1 (`{f}`)",
                            "agrees" if ratio >= COMPETITIVE else "contradicts"])
    return Verdict("C6: throughput stays competitive for moderate m", _decide(outcomes, bool(outcomes)),
                   "whole-layer forward + backward, from the committed throughput table" if out
                   else "no layer throughput table (reports/benchmarks/bench_layer.csv) was given", out,
                   ("layer", "throughput", "outcome"))


def verdicts(grid: grids.Grid, summary: pd.DataFrame, bench_files=()) -> list:
    return [c1(grid, summary), c2(grid, summary), c3(grid, summary), c4(grid, summary), c5(grid, summary),
            c6(bench_files)]


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def section(grid: grids.Grid, summary: pd.DataFrame, bench_files=()) -> str:
    """The report's claims section: a verdict table, the rules, then each claim's numbers."""
    vs = verdicts(grid, summary, bench_files)
    parts = [_table(("claim", "verdict", "basis"), [[v.claim, f"**{v.verdict}**", v.why] for v in vs]),
             disagreements(vs), "Rules (statemix.claims):\n\n" + RULES]
    parts += [f"### {v.claim}\n\n**{v.verdict}**. " + v.why + "."
              + (" **This disagrees with the paper.**" if v.verdict == "refuted" else "") + "\n\n"
              + (_table(v.header, v.rows) if v.rows else "No cell of this grid bears on it.")
              for v in vs]
    return "\n\n".join(parts)


def disagreements(vs: list) -> str:
    """One plain sentence on where this grid's runs disagree with the paper (its refuted claims)."""
    refuted = [v.claim.split(":")[0] for v in vs if v.verdict == "refuted"]
    if not refuted:
        return "No claim is refuted by this grid's runs: where they bear on a claim, they agree with the paper."
    return (f"**Where this grid's runs disagree with the paper: {', '.join(refuted)}** (refuted under this grid's "
            "protocol, stated above: at least one informative comparison contradicts the claim; the rows marked "
            "as such below give the numbers).")


def not_run(grid: grids.Grid, table: pd.DataFrame) -> str:
    """Cells of the grid with runs that have no finished result, grouped by study, task, arch and variant."""
    done = set(table["path"])
    missing = [r for key, r in grid.runs.items() if key not in done]
    if not missing:
        return f"Every one of the grid's {len(grid.runs)} runs has finished."
    frame = pd.DataFrame([{"study": ",".join(r.studies), "task": r.task, "arch": r.arch, "variant": r.variant,
                           "cell": f"w{r.width}/s{r.seed}"} for r in missing])
    body = [[*k, len(g), " ".join(sorted(g["cell"]))] for k, g in frame.groupby(["study", "task", "arch", "variant"])]
    return (f"{len(missing)} of the grid's {len(grid.runs)} runs have no finished result (no metrics.json under "
            f"results/{grid.name}): not yet run on the GPU. Claims that need them are inconclusive.\n\n"
            + _table(("study", "task", "arch", "variant", "runs", "width/seed"), body))


def deviations(grid: grids.Grid) -> str:
    items = grid.spec.get("deviations") or []
    if not items:
        return f"The grid file lists no deviations (`{grid.file.name}`: `deviations`)."
    return (f"From `params/grids/{grid.file.name}` (`deviations`), the one list of them:\n\n"
            + "\n".join(f"- {d}" for d in items))
