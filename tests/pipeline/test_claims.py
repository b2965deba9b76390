"""Each claim's verdict rule on hand-built summaries: a confirming, a refuting and an inconclusive case."""

from pathlib import Path

import pandas as pd
import pytest

from statemix import claims, grids

TASK_OF = {"in-context-recall": "in-context-recall", "compression": "compression", "S3": "permutation"}


def grid(*tasks, thresholds=(0.5,), deviations=None):
    spec = {"name": "hand", "report": {"thresholds": list(thresholds)},
            "tasks": {t: {"task": TASK_OF[t], **({"params": {"group": "S3"}} if t == "S3" else {})} for t in tasks}}
    if deviations:
        spec["deviations"] = deviations
    return grids.Grid("hand", Path("hand.yaml"), spec, {}, {})


def cell(task, arch, mean, std=0.01, n=3, failed=0, variant="base", section="main", width=32, params=1000):
    return {"task": task, "task_name": TASK_OF[task], "arch": arch, "variant": variant, "width": width,
            "state_size": width, "params_total": params, "seeds": n + failed, "failed": failed,
            "acc_mean": mean, "acc_std": std, "sections": section}


def summary(*cells):
    return pd.DataFrame(list(cells))


def icr(bdlru=0.9, gdn=0.895, lstm=0.6, n=3, drop=()):
    means = {"bdlru-m2": bdlru, "mamba2": 0.85, "gdn": gdn, "dproduct": 0.5, "lstm": lstm}
    return summary(*(cell("in-context-recall", a, m, n=n) for a, m in means.items() if a not in drop))


@pytest.mark.parametrize("table, verdict", [
    (icr(), "confirmed"),                          # gdn 0.895 is within the margin: a match
    (icr(gdn=0.95), "refuted"),                    # gdn beats BD-LRU by more than 0.01
    (icr(drop=("lstm",)), "inconclusive"),         # a baseline is missing
    (icr(n=1), "inconclusive"),                    # one seed per cell
    (icr(bdlru=0.1, gdn=0.1, lstm=0.1).assign(acc_mean=0.1), "inconclusive"),   # all at chance (1/16 + 0.1)
])
def test_c1(table, verdict):
    assert claims.c1(grid("in-context-recall"), table).verdict == verdict


def test_c1_a_loss_refutes_even_when_cells_are_missing():
    assert claims.c1(grid("in-context-recall"), icr(gdn=0.95, drop=("lstm",))).verdict == "refuted"


@pytest.mark.parametrize("rows, verdict", [
    ([("hlru-m2", 0.6, 1000), ("lru", 0.6, 2000), ("bdlru-m2", 0.4, 500)], "confirmed"),
    ([("hlru-m2", 0.6, 1000), ("lru", 0.6, 2000), ("bdlru-m2", 0.55, 500)], "refuted"),
    ([("hlru-m2", 0.6, 1000), ("lru", 0.3, 2000)], "inconclusive"),       # only one arch reaches 0.5
    ([("hlru-m1", 0.6, 900), ("hlru-m2", 0.6, 1000), ("lru", 0.6, 2000)], "refuted"),   # m=1 is diagonal
])
def test_c2(rows, verdict):
    table = summary(*(cell("compression", a, m, params=p) for a, m, p in rows))
    assert claims.c2(grid("compression"), table).verdict == verdict


def order(*means, family="hlru"):
    return summary(*(cell("in-context-recall", f"{family}-m{m}", v, section="order", width=120)
                     for m, v in enumerate(means, start=1) if v is not None))


@pytest.mark.parametrize("table, verdict", [
    (pd.concat([order(0.3, 0.6, 0.65, 0.7), order(0.3, 0.5, 0.52, family="bdlru")]), "confirmed"),
    (order(0.3, 0.35, 0.7, 0.72), "refuted"),      # m=2 -> 3 gains 0.35, m=1 -> 2 only 0.05
    (order(0.3, None, 0.7), "inconclusive"),       # m=2 missing
    (order(0.3, 0.305, 0.31), "inconclusive"),     # no real gain from m=1 to 2
])
def test_c3(table, verdict):
    assert claims.c3(grid("in-context-recall"), table).verdict == verdict


def perm(bdlru=0.99, arch="bdlru-m4", lstm=0.4):
    means = {arch: bdlru, "mamba2": 0.5, "gdn": 0.6, "dproduct": 0.7, "lstm": lstm}
    return summary(*(cell("S3", a, m) for a, m in means.items()))


@pytest.mark.parametrize("table, verdict", [
    (perm(), "confirmed"),
    (perm(bdlru=0.6), "refuted"),                   # not solved (< 0.9)
    (perm(lstm=0.985), "refuted"),                  # solved, but LSTM matches it
    (perm(arch="bdlru-m8"), "inconclusive"),        # only a large block size solves it
    (perm().assign(acc_mean=0.2), "inconclusive"),  # all at chance (1/6 + 0.1)
])
def test_c4(table, verdict):
    assert claims.c4(grid("S3"), table).verdict == verdict


def norm(soft=(0.9, 0), relu=(0.3, 2), sigmoid=(0.88, 0), drop=()):
    rows = {"softmax": soft, "relu": relu, "sigmoid": sigmoid}
    return summary(*(cell("in-context-recall", "hlru-m2", m, n=3 - f, failed=f, variant=v, section="norm")
                     for v, (m, f) in rows.items() if v not in drop))


@pytest.mark.parametrize("table, verdict", [
    (norm(), "confirmed"),                          # relu: 2 of 3 runs failed
    (norm(relu=(0.5, 0)), "confirmed"),             # relu: no failure, but clearly below softmax
    (norm(relu=(0.9, 0)), "refuted"),               # relu matches softmax
    (norm(soft=(0.9, 1)), "refuted"),               # softmax itself had a failed run
    (norm(sigmoid=(0.95, 0)), "refuted"),           # another normalisation beats softmax
    (norm(drop=("relu",)), "inconclusive"),
])
def test_c5(table, verdict):
    assert claims.c5(grid("in-context-recall"), table).verdict == verdict


@pytest.mark.parametrize("m4, verdict", [(60.0, "confirmed"), (40.0, "refuted"), (None, "inconclusive")])
def test_c6(tmp_path, m4, verdict):
    files = []
    if m4 is not None:
        rows = [("bdlru-m1", 100.0), ("bdlru-m2", 80.0), ("bdlru-m4", m4), ("bdlru-m8", 10.0), ("hlru-m2", 120.0)]
        pd.DataFrame([{"layer": n, "dtype": "bf16", "tokens_per_s": t} for n, t in rows]).to_csv(
            tmp_path / "bench_layer.csv", index=False)
        files = [str(tmp_path / "bench_layer.csv")]
    v = claims.c6(files)
    assert v.verdict == verdict
    assert not any("bdlru-m8" in row[0] for row in v.rows)     # m=8 is not moderate


def test_section_not_run_and_deviations():
    g = grid("S3", deviations=["three seeds instead of best-of-sweep"])
    g.runs.update({f"results/hand/S3/lru/base/w8/s{s}": grids.Run("S3", "lru", "base", 8, s, "permutation",
                                                                     studies=("main",)) for s in (0, 1)})
    text = claims.section(g, perm(), [])
    assert "| C4: BD-LRU solves S3–S5 at moderate block sizes and beats the baselines there | **confirmed** |" in text
    assert claims.RULES in text
    assert "No claim is refuted by this grid's runs" in text and "disagrees with the paper" not in text
    missing = claims.not_run(g, pd.DataFrame({"path": ["results/hand/S3/lru/base/w8/s0"]}))
    assert "1 of the grid's 2 runs" in missing and "| main | S3 | lru | base | 1 | w8/s1 |" in missing
    assert "- three seeds instead of best-of-sweep" in claims.deviations(g)


def test_a_refuted_claim_is_called_a_disagreement_with_the_paper():
    vs = [claims.Verdict("C1: one", "confirmed", "x", []), claims.Verdict("C5: two", "refuted", "y", []),
          claims.Verdict("C6: three", "refuted", "z", [])]
    assert claims.disagreements(vs).startswith("**Where this grid's runs disagree with the paper: C5, C6**")


@pytest.mark.parametrize("rule, table, arch", [
    (claims.c1, icr(), "bdlru-m2"),
    (claims.c1, icr(), "lstm"),
    (claims.c3, pd.concat([order(0.3, 0.6, 0.65, 0.7), order(0.3, 0.5, 0.52, family="bdlru")]), "hlru-m2"),
    (claims.c4, perm(), "bdlru-m4"),
    (claims.c5, norm(), "softmax"),
])
def test_a_cell_with_unfinished_seeds_confirms_nothing(rule, table, arch):
    """The same summaries that confirm their claim, but one cell has 3 of 4 planned runs finished: early stopping
    finishes the seeds that learn first, so the part is no evidence, and the claim stays inconclusive."""
    key = "variant" if rule is claims.c5 else "arch"
    table = table.assign(planned=table["seeds"].where(~table[key].eq(arch), table["seeds"] + 1))
    tasks = {claims.c1: ("in-context-recall",), claims.c3: ("compression",), claims.c4: ("S3",),
             claims.c5: ("in-context-recall",)}[rule]
    assert rule(grid(*tasks), table.drop(columns="planned")).verdict == "confirmed"
    v = rule(grid(*tasks), table)
    assert v.verdict == "inconclusive"
    assert any("unfinished" in str(r[-1]) for r in v.rows) or any("of 4" in str(r[1]) for r in v.rows)


def test_c2_counts_only_cells_whose_seeds_all_finished():
    rows = [("hlru-m2", 0.6, 1000), ("lru", 0.6, 2000), ("bdlru-m2", 0.4, 500)]
    table = summary(*(cell("compression", a, m, params=p) for a, m, p in rows))
    unfinished = table.assign(planned=table["seeds"] + table["arch"].eq("hlru-m2"))
    assert claims.c2(grid("compression"), unfinished).verdict == "inconclusive"


def test_planned_counts_the_grids_runs_per_cell():
    from statemix import aggregate

    g = grids.load("paper")
    table = pd.DataFrame([{"task": "in-context-recall", "task_name": "in-context-recall", "arch": "bdlru-m2",
                           "variant": "base", "width": 16}])
    got = aggregate.with_planned(table, g)
    want = sum(1 for r in g.runs.values() if (r.task, r.arch, r.variant, r.width) ==
               ("in-context-recall", "bdlru-m2", "base", 16))
    assert got["planned"].item() == want == len(g.spec["seeds"])
