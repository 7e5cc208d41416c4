"""Loading a study file (``studies/*.yaml``) with its dataset: what to calibrate, against
what, at which fidelity.

Loading validates everything a run needs (stage, dataset and its targets, fidelity,
parameter keys and bounds, the stage's own checks) before anything is written; any problem
is an ``InputError`` naming the file and the field. The file's models are ``calib.spec.study_file``
(what every study has) joined with the sections of the registered stages
(``study_spec_model``).
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from objectives.dataset import Dataset, DatasetError, PhaseSpec, load_dataset
from objectives.rheology import ViscosityCurve
from objectives.yamlfile import first_error, load_yaml_model

from calib import stages
from calib.core.errors import InputError
from calib.spec.study_file import StudyBase, ladder_problem

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO_ROOT / "experiments_data"
DEFAULT_STUDY = REPO_ROOT / "studies" / "ssb_slurry.yaml"


def study_spec_model() -> type[StudyBase]:
    """The study-file model: ``StudyBase`` plus every registered stage's sections (each
    defaulting to its model's defaults)."""
    sections = stages.registry.all_sections()
    return _spec_model(tuple(sorted((k, v) for k, v in sections.items())))


class StudySpec(StudyBase):
    """``StudyBase`` with the checks that need the stage registry (the schema sits below the
    stages, which use its models; the registry's checks belong here, above both)."""

    def _check_stage(self) -> None:
        if self.stage not in stages.registry.names():
            raise ValueError(f"stage: unknown stage {self.stage!r} (known: {', '.join(stages.registry.names())})")

    def _check_stage_fields(self) -> None:
        stage = stages.registry.get(self.stage)
        for t in self.objective.targets:
            if t not in stage.targets:
                raise ValueError(f"objective.targets.{t}: stage {self.stage} does not produce it "
                                 f"(it produces {', '.join(stage.targets)})")
        if stage.upstream is not None and self.upstream is None:
            raise ValueError(f"upstream: stage {self.stage} starts from a {stage.upstream} state: "
                             "name the upstream study (upstream.study) or a data file (upstream.data_file)")


@lru_cache(maxsize=None)
def _spec_model(sections: tuple[tuple[str, type[BaseModel]], ...]) -> type[StudyBase]:
    fields: dict[str, Any] = {name: (model, model()) for name, model in sections}
    return create_model("StudySpec", __base__=StudySpec, **fields)


def parse_spec_json(text: str) -> StudyBase:
    """A study spec stored as JSON (the ledger keeps one per study)."""
    return study_spec_model().model_validate_json(text)


def dataset_path(dataset: str, study_dir: Path, data_root: Path = DEFAULT_DATA_ROOT) -> Path:
    """A dataset named ``X`` is ``<data_root>/X/dataset.yaml``; a value ending in ``.yaml``
    is a path (relative to the study file's folder)."""
    if dataset.endswith((".yaml", ".yml")):
        p = Path(dataset)
        return p if p.is_absolute() else (Path(study_dir) / p)
    return Path(data_root) / dataset / "dataset.yaml"


def with_fidelity(spec: StudyBase, fidelity: str) -> StudyBase:
    """``spec`` at the named fidelity ``fidelity`` (``--fidelity``: a study file's, or a stored
    study's settings); ``InputError`` naming ``--fidelity`` if the study knows no such fidelity
    or its multi-fidelity ladder does not allow it as the target."""
    if fidelity not in spec.all_fidelities():
        known = ", ".join(spec.all_fidelities())
        raise InputError("--fidelity", "fidelity", f"unknown fidelity {fidelity!r} (known: {known})")
    if spec.optimizer.multi_fidelity is not None:
        problem = ladder_problem(fidelity, spec.optimizer.multi_fidelity.ladder)
        if problem:
            raise InputError("--fidelity", "fidelity", problem)
    return spec.model_copy(update={"fidelity": fidelity})


def load_study(path: Path, fidelity: str | None = None, data_root: Path = DEFAULT_DATA_ROOT,
               viscosity_csv: Path | None = None) -> "LoadedStudy":
    """Read and validate a study file and its dataset; ``fidelity`` overrides the file's;
    ``viscosity_csv`` replaces the dataset's (or the study's) viscosity curve."""
    path = Path(path)
    where = str(path)
    spec = load_yaml_model(path, study_spec_model(), partial(InputError, where), "study file not found",
                           "expected a mapping of study settings", partial(first_error, lift_field=True))
    if fidelity is not None:
        spec = with_fidelity(spec, fidelity)
    dpath = dataset_path(spec.dataset, path.parent, data_root)
    if not dpath.is_file():
        raise InputError(where, "dataset", f"no dataset {spec.dataset!r} (expected {dpath})")
    try:
        dataset = load_dataset(dpath)
    except DatasetError as exc:
        raise InputError(str(exc.path), exc.field, exc.message) from exc
    dataset = _with_study_sizes(dataset, spec, where)
    if viscosity_csv is not None and "viscosity_curve" not in spec.objective.targets:
        raise InputError("--viscosity-csv", "(option)", "the study does not score viscosity_curve "
                                                        "(add it to objective.targets)")
    if dataset.system is None:
        raise InputError(str(dpath), "system", "the dataset describes no particle system")
    check_bead_convention(dataset, dpath)
    loaded = LoadedStudy(spec=spec, dataset=dataset, path=path, dataset_path=dpath)
    return loaded.stage.prepare(loaded, {"viscosity_csv": viscosity_csv})


def check_bead_convention(dataset: Dataset, dpath: Path) -> None:
    """Every value the bead-counting convention needs (``sim_backends.lammps.beads``): size
    classes for every phase, the solvent-shell factor of AM and SE, the solid CBD bead
    (diameter and density). ``InputError`` naming the dataset file and field otherwise."""
    assert dataset.system is not None
    hint = "(or give system.{name}.{field} in the study)"
    for name, phase in dataset.system.phases.items():
        need = ["size_classes"]
        if name in ("AM", "SE"):
            need.append("slurry_diameter_factor")
        if name == "CBD":
            need += ["dried_diameter_um", "dried_density_g_cm3"]
        for f in need:
            if getattr(phase, f) is None:
                what = {"size_classes": "bead sizes", "slurry_diameter_factor": "the solvent-shell factor of the slurry bead",
                        "dried_diameter_um": "the solid (dried) CBD bead diameter, which counts the CBD beads",
                        "dried_density_g_cm3": "the solid CBD density (bulk x (1 - nanoporosity)), which counts the CBD beads"}[f]
                raise InputError(str(dpath), f"system.phases.{name}.{f}",
                                 f"{what} is needed to build the beads but not given " + hint.format(name=name, field=f))
        if phase.dried_diameter_um is not None and phase.size_classes is not None:
            wet = min(c.diameter_um for c in phase.size_classes)
            m_wet = phase.density_g_cm3 * wet**3
            m_solid = (phase.dried_density_g_cm3 or 0.0) * phase.dried_diameter_um**3
            if m_wet < m_solid:
                raise InputError(str(dpath), f"system.phases.{name}.dried_density_g_cm3",
                                 f"the solid bead ({phase.dried_diameter_um:g} um) is heavier than the slurry bead "
                                 f"({wet:g} um at {phase.density_g_cm3:g} g/cm^3): the solvent mass would be negative")


def _with_study_sizes(dataset: Dataset, spec: StudyBase, where: str) -> Dataset:
    """The dataset with the bead sizes the study supplies (``system.<phase>``)."""
    if not spec.system:
        return dataset
    if dataset.system is None:
        raise InputError(where, "system", f"dataset {spec.dataset} describes no particle system to size")
    phases: dict[str, PhaseSpec] = dict(dataset.system.phases)
    for name, sizes in spec.system.items():
        if name not in phases:
            raise InputError(where, f"system.{name}", f"dataset {spec.dataset} has no phase {name}")
        try:
            update: dict = {"size_classes": sizes.size_classes}
            for key in ("slurry_diameter_factor", "dried_diameter_factor", "dried_diameter_um", "dried_density_g_cm3"):
                if getattr(sizes, key) is not None:
                    update[key] = getattr(sizes, key)
            phases[name] = PhaseSpec.model_validate({**phases[name].model_dump(), **update})
        except ValidationError as exc:
            raise InputError(where, f"system.{name}.size_classes",
                             exc.errors()[0]["msg"].removeprefix("Value error, ")) from exc
    system = dataset.system.model_copy(update={"phases": phases})
    out = dataset.model_copy(update={"system": system})
    out._curves = dataset._curves
    return out


class LoadedStudy(BaseModel):
    """A study spec with its dataset and where both came from; ``curve``: the measured
    viscosity curve a slurry study scores (and ``curve_source``, where it came from)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: StudyBase
    dataset: Dataset
    path: Path
    dataset_path: Path
    curve: ViscosityCurve | None = None
    curve_source: str | None = None

    @property
    def stage(self) -> stages.Stage:
        """The study's stage (``calib.stages``)."""
        return stages.get(self.spec.stage)

    def with_stage(self, name: str, targets: dict[str, float] | None = None) -> "LoadedStudy":
        """This study's settings read as a study of stage ``name`` (``calib pipeline``), scoring
        ``targets`` (default: none)."""
        objective = self.spec.objective.model_copy(update={"targets": dict(targets or {})})
        return self.model_copy(update={"spec": self.spec.model_copy(update={"stage": name, "objective": objective})})

    def with_section(self, section: str, **values: Any) -> "LoadedStudy":
        """This study with fields of one settings section replaced (``calib pipeline --degrees``)."""
        new = getattr(self.spec, section).model_copy(update=values)
        return self.model_copy(update={"spec": self.spec.model_copy(update={section: new})})
