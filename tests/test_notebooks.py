"""Both notebooks run top to bottom in a python3 kernel (nbclient) on the shipped levels and
the fixture results, draw their figures and print what the fixture holds."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results" / "leaderboard.csv"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    # the kernel inherits the environment: its caches go to tmp_path too
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COG_NLTK_DATA", str(tmp_path / "nltk_data"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))


def run(name: str, **params: object) -> nbformat.NotebookNode:
    """Execute a notebook, with `params` replacing assignments of its parameters cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if params:
        cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def outputs(nb) -> tuple[str, int]:
    """All text the notebook printed or displayed, and how many images it showed."""
    text, images = [], 0
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.output_type == "stream":
                text.append(o.text)
            elif o.output_type in ("execute_result", "display_data"):
                text.append(o.data.get("text/plain", ""))
                images += "image/png" in o.data
    return "\n".join(text), images


@pytest.mark.slow
def test_explore_results_runs_on_the_fixture_by_default():
    nb = run("explore_results.ipynb")
    text, images = outputs(nb)
    assert images == 3  # relative, per level, few-shot
    assert "125 rows, 7 models; 34 all-data and 43 few-shot rows for top1 (fast)" in text
    assert "['sup_resnet50+random-init']" in text
    assert "63.5 ± 0.1" in text  # dino_resnet50 L3 in the ranking
    assert "- mixup_resnet50: no all-data result for L4" in text
    assert "- deit_small: no few-shot results" in text


@pytest.mark.slow
def test_explore_results_takes_another_leaderboard(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.startswith(("sup_resnet50,", "deit_small,"))]
    (tmp_path / "lb.csv").write_text("\n".join(keep) + "\n")
    text, images = outputs(run("explore_results.ipynb", LEADERBOARD=str(tmp_path / "lb.csv")))
    assert "2 models" in text and images == 3
    assert "run JSON(s) named by the leaderboard are missing" in text  # runs/ not copied


@pytest.mark.slow
def test_explore_levels_runs_on_the_shipped_levels():
    if not (NOTEBOOKS.parent / "cog" / "resources" / "levels" / "ic.tsv").is_file():
        pytest.skip("cog/resources/levels not built")
    text, images = outputs(run("explore_levels.ipynb", N_EXAMPLES=3))
    assert images == 1
    assert "concepts  1000  1000  1000  1000  1000" in text
    if "WordNet 3.0 not available" in text:
        pytest.skip("WordNet 3.0 not installed (scripts/install.sh): routes not checked")
    routes = [ln for ln in text.splitlines() if ln[:3] in ("L1:", "L2:", "L3:", "L4:", "L5:")]
    assert len(routes) == 5 and all(" > " in r for r in routes)
    assert "Lin (recomputed)" in text  # and the notebook asserted it equals the stored S(c)
