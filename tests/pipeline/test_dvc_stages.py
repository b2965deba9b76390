"""dvc.yaml's code deps are the files grids.STAGE_CODE gives each Snakemake stage, so DVC and Snakemake rerun a
stage on the same edits."""
import pytest
import yaml

from statemix import grids

ROOT = grids.ROOT
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _files(dep: str) -> set:
    """A dvc dep as files: a folder stands for every file under it, bytecode caches and notes (*.md) aside."""
    path = ROOT / dep
    if path.is_dir():
        return {str(p.relative_to(ROOT)) for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".md"}
    return {dep}


def _produced() -> set:
    outs = set()
    for body in DVC["stages"].values():
        for key in ("outs", "metrics", "plots"):
            outs |= {next(iter(o)) if isinstance(o, dict) else o for o in body.get(key, [])}
    return outs


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_dvc_code_deps_equal_stage_code(stage):
    body = DVC["stages"][stage]
    produced = _produced()
    code = set().union(*(_files(d) for d in body["deps"] if d not in produced and not d.endswith(".smk")))
    params = {next(iter(p)) for p in body.get("params", []) if isinstance(p, dict)}
    expected = set(grids.code_files(stage)) - params
    assert sorted(code - expected) == [], f"dvc.yaml {stage} lists code that grids.STAGE_CODE does not"
    assert sorted(expected - code) == [], f"grids.STAGE_CODE {stage} lists code that dvc.yaml does not"
    assert f"workflow/rules/{stage}.smk" in body["deps"]


def test_every_snakemake_stage_but_the_gpu_benchmark_is_a_dvc_stage():
    assert set(grids.STAGE_CODE) - set(DVC["stages"]) == {"benchmark"}
