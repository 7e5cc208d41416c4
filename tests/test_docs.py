"""The documentation site (mkdocs.yml, docs/): it builds in strict mode (a broken link or
anchor fails the build), its generated study-file reference names every field of every
settings model, its generated CLI reference names every command and option, and a broken
link in a page fails the build naming the page. The README: its two commands are the ones
CI runs, its links (to files and to sections of the site) resolve, the MLflow UI is served
by an absolute store path everywhere, and the operator topics live in docs/operations.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
INSTALL_AND_RUN = ("python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . && "
                   ".venv/bin/calib optimize --stage slurry")
TEST_COMMAND = ('python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e ".[test]" && '
                ".venv/bin/python -m pytest -q -n 2 --dist loadgroup")


def build(config_dir: Path, site_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "CALIB_REPO": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
                          cwd=config_dir, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = build(REPO, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _models(tp) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _models(arg)]


def settings_models() -> list[type[BaseModel]]:
    """The study model (with every registered stage's sections), the dataset model, and
    every model reachable from them through their fields."""
    from calib import stages
    from calib.study.load import study_spec_model
    from objectives.dataset import Dataset

    todo = [study_spec_model(), Dataset, *stages.registry.all_sections().values()]
    seen: list[type[BaseModel]] = []
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.append(m)
        for f in m.model_fields.values():
            todo.extend(_models(f.annotation))
    return seen


def test_site_builds_with_every_page(site: Path):
    for page in ("index.html", "installation.html", "tutorial.html", "usage.html", "operations.html", "model.html",
                 "optimizer.html",
                 "architecture.html", "adding_a_stage.html", "stages/slurry.html", "stages/drying.html",
                 "stages/calendering.html", "stages/characterise.html", "reference/study-file.html",
                 "reference/cli.html"):
        assert (site / page).is_file(), page
    assert not list(site.rglob("*.py")), "generator modules must not be published"


def test_study_reference_names_every_field(site: Path):
    html = (site / "reference" / "study-file.html").read_text()
    models = settings_models()
    assert len(models) > 20
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields if f"<code>{name}</code>" not in html]
    assert not missing, missing
    for m in models:  # each model has its own section (nested types link to it)
        assert f'id="{m.__name__.lower()}"' in html, m.__name__


def test_cli_reference_names_every_command_and_option(site: Path):
    import typer.main

    from calib.cli import app

    html = (site / "reference" / "cli.html").read_text()
    commands = typer.main.get_command(app).commands
    assert {"optimize", "refine", "export", "report", "pipeline", "reproduce"} <= set(commands)
    for name, command in commands.items():
        assert f"calib {name}" in html, name
        for param in command.params:
            for opt in param.opts:
                if opt != "--help":
                    assert f"<code>{opt}</code>" in html, f"calib {name} {opt}"


def test_broken_link_fails_the_strict_build(tmp_path: Path):
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    page = tmp_path / "docs" / "tutorial.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md) and "
                    "[a missing section](model.md#no-such-section).\n")
    proc = build(tmp_path, tmp_path / "site")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "tutorial.md" in out and "no-such-page.md" in out, out
    assert "no-such-section" in out, out


def test_the_readme_s_two_commands_are_the_ones_ci_runs():
    """The install + main job and the test command, byte for byte, before anything else the
    README explains; ``.ci/run`` runs the test command (pip quiet)."""
    text = README.read_text()
    assert [line for line in text.splitlines() if line.startswith("python3 -m venv")] == [INSTALL_AND_RUN, TEST_COMMAND]
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert ci == [TEST_COMMAND.replace("/pip install ", "/pip install -q ")]
    first_section = text.index("\n## ", text.index(TEST_COMMAND))
    assert text.index(INSTALL_AND_RUN) < text.index(TEST_COMMAND) < first_section


def test_the_readme_s_links_resolve(site: Path):
    """Every relative link of the README names a file of the repository, and a link to a
    section of a documentation page names a section the built site has."""
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", README.read_text()) if "://" not in link]
    assert len(links) >= 10, links
    for link in links:
        path, _, anchor = link.partition("#")
        assert (REPO / path).exists(), link
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            html = (site / path.removeprefix("docs/").replace(".md", ".html")).read_text()
            assert f'id="{anchor}"' in html, link


def test_the_mlflow_ui_is_served_by_an_absolute_store_path():
    """``sqlite:///runs/mlflow.db`` names the store relative to the folder ``mlflow ui`` runs
    in; the README and the pages give an absolute path (``$PWD``) instead."""
    pages = [README, *sorted((REPO / "docs").rglob("*.md"))]
    relative = [str(p.relative_to(REPO)) for p in pages if re.search(r"sqlite:///(?!/|\$PWD)", p.read_text())]
    assert not relative, relative
    assert 'mlflow ui --backend-store-uri "sqlite:///$PWD/runs/mlflow.db"' in README.read_text()


@pytest.mark.parametrize("topic", ["--heartbeat-s", "sbatch", "squeue", "postgresql+psycopg", "docker compose",
                                   "mlflow_record.json", "reaper", "calib_lost"])
def test_operator_topics_live_in_the_operations_page(topic: str):
    assert topic not in README.read_text(), f"{topic!r}: an operator topic, for docs/operations.md"
    assert topic in (REPO / "docs" / "operations.md").read_text(), topic
