"""A study found in the ledger by name, rebuilt as it was run: ``calib refine``,
``calib predict`` and ``calib report`` start here.

The ledger keeps each calib study's full settings (its spec as JSON), the dataset file, the
study file it came from, the viscosity curve's source and the upstream state (``Lineage``).
``open_stored`` rebuilds the ``LoadedStudy`` from them and checks that it still is the
calibration that was run (``ledger.check_resumable``: a dataset, curve or upstream state
edited since is refused). Any problem is an ``InputError`` (exit 2, nothing written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url

from calib import ledger
from calib.core.errors import InputError
from calib.stages.upstream_state import Lineage, sha256_of
from calib.study.space import ParameterSpace
from calib.study.load import DEFAULT_DATA_ROOT, LoadedStudy, check_bead_convention, dataset_path, parse_spec_json


@dataclass(frozen=True)
class StoredStudy:
    """A stored study with its settings rebuilt: the Optuna study, the ``LoadedStudy``,
    its parameter space, upstream state (chained stages) and storage URL."""

    study: optuna.Study
    loaded: LoadedStudy
    space: ParameterSpace
    lineage: Lineage | None
    storage: str

    @property
    def name(self) -> str:
        return self.study.study_name


def check_ledger(storage: str) -> None:
    """The storage URL must parse, and a SQLite ledger must exist (reading a study never
    creates a database)."""
    try:
        u = make_url(storage)
    except Exception as exc:
        raise InputError("--storage", "url", f"not a SQLAlchemy URL: {storage!r}") from exc
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        if not Path(u.database).is_file():
            raise InputError("--storage", "url", f"no study database at {u.database}: no study has run with this "
                                                 "--runs-dir (or --storage) yet; run calib optimize first, or point "
                                                 "--runs-dir at the folder holding calib.db")
    ledger.check_storage(storage)


def load_calib_study(name: str, storage: str) -> optuna.Study:
    """Study ``name`` of ``storage``, which calib created (``InputError`` otherwise)."""
    check_ledger(storage)
    if not ledger.study_exists(name, storage):
        raise InputError("--study", "study", f"no study named {name!r} in {ledger.shown(storage)}")
    study = optuna.load_study(study_name=name, storage=storage)
    if ledger.STUDY_FILE_ATTR not in study.user_attrs:
        raise InputError("--study", "study", f"study {name!r} was not created by calib")
    return study


_CSV_SOURCE = re.compile(r"^(?P<path>/.+?) \(kind ")


def stored_loaded(study: optuna.Study, data_root: Path = DEFAULT_DATA_ROOT) -> LoadedStudy:
    """The ``LoadedStudy`` of a calib study as the ledger keeps it: its spec, its dataset
    file (with the study's bead sizes, checked for the bead convention) and study file.
    ``InputError`` if the dataset is gone or unreadable."""
    from objectives.dataset import DatasetError, load_dataset

    from calib.study.load import _with_study_sizes

    name, attrs = study.study_name, study.user_attrs
    spec = parse_spec_json(attrs[ledger.STUDY_FILE_ATTR])
    dpath = Path(attrs.get(ledger.DATASET_PATH_ATTR) or dataset_path(spec.dataset, Path.cwd(), data_root))
    if not dpath.is_file():
        raise InputError("--study", "dataset", f"study {name!r} was calibrated on {dpath}, which is gone")
    try:
        dataset = load_dataset(dpath)
    except DatasetError as exc:
        raise InputError(str(exc.path), exc.field, exc.message) from exc
    study_file = Path(attrs.get(ledger.STUDY_PATH_ATTR) or Path.cwd() / f"{name}.yaml")
    dataset = _with_study_sizes(dataset, spec, str(study_file))
    check_bead_convention(dataset, dpath)
    return LoadedStudy(spec=spec, dataset=dataset, path=study_file, dataset_path=dpath)


def open_stored(name: str, storage: str, data_root: Path = DEFAULT_DATA_ROOT) -> StoredStudy:
    """Rebuild stored study ``name`` (see the module docstring)."""
    from calib.study.identity import study_ident

    study = load_calib_study(name, storage)
    attrs = study.user_attrs
    loaded = stored_loaded(study, data_root)
    spec = loaded.spec
    csv = None
    m = _CSV_SOURCE.match(str(attrs.get("viscosity_curve_source") or ""))
    if m and ": curves." not in m.group("path"):  # the curve came from a rheometer CSV
        csv = Path(m.group("path"))
        if not csv.is_file():
            raise InputError("--study", "viscosity_curve", f"study {name!r} scored the viscosity curve in {csv}, "
                                                           "which is gone")
    loaded = loaded.stage.prepare(loaded, {"viscosity_csv": csv})
    lineage = None
    if attrs.get("lineage"):
        lineage = Lineage(**attrs["lineage"])
        state = Path(lineage.state_file)
        if not state.is_file() or sha256_of(state) != lineage.sha256:
            raise InputError("--study", "upstream", f"the state study {name!r} started from ({state}) is gone or "
                                                    "has changed since")
    space = ParameterSpace.from_spec(spec.parameters)
    try:
        ledger.check_resumable(study, study_ident(loaded, space, lineage), storage)
    except InputError as exc:
        raise InputError("--study", exc.field, f"study {name!r} no longer matches what it was run with: its "
                                               f"{exc.field} changed since (an edited dataset, curve or state "
                                               "file?)") from exc
    return StoredStudy(study, loaded, space, lineage, storage)
