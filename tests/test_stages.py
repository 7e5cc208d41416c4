"""The stage registry (issue 11): every stage declares its identity fields, an unknown stage
is refused, and a stage added here, in a test module, runs through the real loop (local
backend, Optuna ledger) with no change anywhere else."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from calib import stages
from calib.core.errors import InputError
from calib.spec.fidelity import Fidelity
from calib.study.identity import study_ident
from calib.study.space import ParameterSpace
from calib.spec.study_file import SpecModel
from calib.stages.base import Run, Score, StageBase, TrialContext, named_errors, scalarised
from calib.study.load import load_study
from conftest import REPO
from objectives.errors import target_error

BUILTIN = ("slurry", "drying", "calendering", "characterise")


def test_the_builtin_stages_are_registered_in_workflow_order():
    assert stages.names()[:4] == BUILTIN
    assert [s.name for s in stages.chain("characterise")] == ["slurry", "drying", "characterise"]
    assert [s.name for s in stages.chain("calendering")] == ["slurry", "drying", "calendering"]


@pytest.mark.parametrize("name", BUILTIN)
def test_each_stage_declares_what_its_identity_keeps(name):
    """Identity fields are declared, and real: fidelity fields of ``Fidelity``, sections the
    stage owns; upstream a registered stage; targets it can score."""
    stage = stages.get(name)
    spec = load_study(REPO / "studies" / "ssb_slurry.yaml").spec.model_copy(update={"stage": name})
    fields = stage.fidelity_fields(spec)
    assert set(fields) <= set(Fidelity.model_fields), set(fields) - set(Fidelity.model_fields)
    assert set(stage.identity_sections(spec)) <= set(stage.sections)
    assert stage.targets and (stage.upstream is None or stage.upstream in stages.names())
    assert stage.column in ("slurry", "dried") and stage.pipeline_key


def test_a_slurry_identity_keeps_exactly_the_declared_fidelity_fields():
    loaded = load_study(REPO / "studies" / "ssb_slurry.yaml", fidelity="smoke")
    space = ParameterSpace.from_spec(loaded.spec.parameters)
    ident = study_ident(loaded, space)
    # an empty transfer map is left out (the identities of studies made before it existed)
    assert set(ident["physics"]["fidelity_spec"]) == set(loaded.stage.fidelity_fields(loaded.spec)) - {"transfer"}
    dev = load_study(REPO / "studies" / "ssb_slurry_mapped.yaml")  # its dev maps the rung: part of the identity
    assert set(study_ident(dev, space)["physics"]["fidelity_spec"]) == set(dev.stage.fidelity_fields(dev.spec))
    assert {"slurry"} <= set(ident["physics"]) and "drying" not in ident["physics"]
    # a field the slurry does not read (a new one would be the same) leaves the identity alone
    fid = loaded.spec.fidelity_spec().model_copy(update={"calender_hold_steps": 123, "drying_steps": 7})
    other = loaded.model_copy(update={"spec": loaded.spec.model_copy(update={"fidelities": {"smoke": fid}})})
    assert study_ident(other, space) == ident


def test_an_unknown_stage_is_refused(tmp_path: Path):
    spec = yaml.safe_load((REPO / "studies" / "ssb_slurry.yaml").read_text())
    spec["stage"] = "sintering"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError) as err:
        load_study(tmp_path / "s.yaml")
    assert err.value.field == "stage" and "sintering" in str(err.value) and "characterise" in str(err.value)
    with pytest.raises(KeyError, match="sintering"):
        stages.get("sintering")


# ----------------------------------------------------------------- a stage from a test module


class ToySettings(SpecModel):
    """The toy's one setting."""

    offset: float = 0.0


TOY_JOB = ("import json; p = json.load(open('toy_in.json')); "
           "open('toy.log', 'w').write('toy ran\\n'); "
           "json.dump({'value': 2 * p['eps_AM'] + p['offset']}, open('toy_out.json', 'w'))")


class ToyTrial:
    """One Python job computing 2 eps_AM + offset, scored as the slurry density."""

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx, self.workdir = ctx, ctx.workdir

    def first_runs(self) -> list[Run]:
        spec = self.ctx.loaded.spec
        (self.workdir / "toy_in.json").write_text(json.dumps({"eps_AM": self.ctx.params.as_dict()["eps_AM"],
                                                              "offset": spec.toy.offset}))
        return [Run("toy", self.workdir, "toy_in.json", "toy.log", ("toy_in.json", "toy_out.json"),
                    argv=(sys.executable, "-c", TOY_JOB))]

    def next_runs(self) -> list[Run]:
        return []

    def score(self, wall_s=None) -> Score:
        value = json.loads((self.workdir / "toy_out.json").read_text())["value"]
        loaded = self.ctx.loaded
        errors = (target_error("slurry_density", value, loaded.dataset.targets["slurry_density"]),)
        return Score(errors, scalarised(named_errors(errors), loaded.spec, self.ctx.seed, None), {"toy_value": value},
                     True, summary=f"toy {value:.3f}")

    def partial_observables(self) -> dict[str, float]:
        return {}

    @property
    def state_file(self):
        return None


class ToyStage(StageBase):
    name = "toy"
    targets = ("slurry_density",)
    sections = {"toy": ToySettings}
    column = "slurry"
    column_title = "toy"
    pipeline_key = "toy"
    fidelity_reads = ("n_beads",)

    def make_trial(self, ctx: TrialContext) -> ToyTrial:
        return ToyTrial(ctx)


@pytest.fixture
def toy_stage():
    stages.register(ToyStage())
    yield
    stages.registry.unregister("toy")


def test_a_stage_added_in_a_test_module_runs_through_the_loop(tmp_path: Path, toy_stage):
    from optuna.trial import TrialState

    from calib.execution.loop import LoopConfig, run_study
    from sim_backends.lammps.install import locate_lammps
    from sim_backends.local import LocalBackend

    study = {"name": "toy_study", "stage": "toy", "dataset": "ssb_nmc622_lpscl", "fidelity": "smoke",
             "parameters": {"base": "table-s1-slurry", "free": {"eps_AM": {"low": 0.5, "high": 1.5}}},
             "objective": {"targets": {"slurry_density": 1.0}}, "toy": {"offset": 0.25},
             "optimizer": {"sampler": "sobol"}}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(study))
    loaded = load_study(tmp_path / "toy.yaml")
    assert loaded.spec.toy.offset == 0.25  # the stage's own section is part of the study file
    cfg = LoopConfig(storage=f"sqlite:///{tmp_path / 'calib.db'}", runs_dir=tmp_path / "runs", n_trials=3,
                     parallel=2, seed=0, poll_s=0.05)
    result = run_study(loaded, cfg, LocalBackend(), locate_lammps())
    done = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3
    for t in done:
        value = 2 * t.params["eps_AM"] + 0.25
        assert t.user_attrs["observables"]["toy_value"] == pytest.approx(value)
        assert t.value == pytest.approx(((value - 1.90) / 1.90) ** 2, rel=1e-6)  # weighted sum of squares
        assert Path(t.user_attrs["calib_workdir"], "toy_out.json").is_file()
    ident = json.loads(result.study.user_attrs["calib_spec"])
    assert ident["stage"] == "toy" and ident["physics"]["toy"] == {"offset": 0.25}
    assert set(ident["physics"]["fidelity_spec"]) == {"n_beads"}


def test_a_study_recorded_before_the_stage_plugins_still_reports_its_best_trial():
    """Trials stored by calib before stages recorded their own ``report`` (no ``report`` or
    ``summary_lines`` attribute): the JSON summary rebuilds ``best_observables``."""
    import optuna
    from optuna.distributions import FloatDistribution

    from calib.review.summary import study_summary

    study = optuna.create_study(direction="minimize")
    attrs = {"observables": {"density_g_cm3": 1.8, "density_sem_g_cm3": 0.01, "density_change_rel": 0.002},
             "errors": {"slurry_density": {"simulated": 1.8, "target": 1.9, "unit": "g/cm^3", "rel_error": -0.0526,
                                           "error": -0.0526, "normalised_by": "value"}},
             "density_converged": True, "density_convergence": "converged at step 20,000", "equilibrated": True,
             "table_s1": {"eps_AM": 1.0}}
    study.add_trial(optuna.trial.create_trial(params={"eps_AM": 1.0}, distributions={"eps_AM": FloatDistribution(0.5, 2)},
                                              value=0.00277, user_attrs=attrs))
    s = study_summary(study, "memory")
    assert s["best_observables"]["slurry_density"] == {"simulated": 1.8, "target": 1.9, "unit": "g/cm^3",
                                                       "rel_error": -0.0526}
    assert s["best_observables"]["density_converged"] is True and s["best_lines"] == []


def test_register_refuses_a_section_that_shadows_a_study_field_or_lacks_defaults():
    class Bad(StageBase):
        name = "bad"
        targets = ("slurry_density",)
        sections = {"optimizer": ToySettings}

    with pytest.raises(ValueError, match="shadow"):
        stages.register(Bad())

    class NoDefault(SpecModel):
        needed: float

    class Bad2(Bad):
        sections = {"bad2": NoDefault}

    with pytest.raises(ValueError, match="default"):
        stages.register(Bad2())
    assert "bad" not in stages.names()


def test_a_trial_scoring_nothing_scalarises_to_zero_under_every_scalarisation():
    """``calib pipeline`` scores its stages with no target; chebyshev of nothing is 0 too."""
    spec = load_study(REPO / "studies" / "ssb_slurry.yaml").spec
    for method in ("weighted_sum", "chebyshev", "parego"):
        s = spec.model_copy(update={"objective": spec.objective.model_copy(update={"scalarisation": method})})
        assert scalarised({}, s, 0, 3) == 0.0
