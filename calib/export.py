"""``calib export``: the best trial of a stored study rendered as Table S1 (``calib.table_s1``)."""

from __future__ import annotations

from pathlib import Path

import optuna
from sqlalchemy.engine import make_url

from sim_backends.lammps.forcefield import ForceFieldParams

from . import ledger
from .errors import InputError
from . import stages
from .ledger import best_trial
from .stages.system import column_system
from .study import DEFAULT_DATA_ROOT, dataset_path, parse_spec_json
from .table_s1 import FORMATS, ExportContext, render


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        return Path(u.database)
    return None


def export_study(name: str, storage: str, fmt: str, data_root: Path = DEFAULT_DATA_ROOT) -> str:
    """Render the best trial of study ``name`` in ``storage`` as ``fmt``."""
    from objectives.dataset import DatasetError, load_dataset

    if fmt not in FORMATS:
        raise InputError("--format", "format", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    try:
        db = _sqlite_path(storage)
    except Exception as exc:
        raise InputError("--storage", "url", f"not a SQLAlchemy URL: {storage!r}") from exc
    if db is not None and not db.is_file():
        raise InputError("--storage", "url", f"no study database at {db}")
    ledger.check_storage(storage)
    if not ledger.study_exists(name, storage):
        raise InputError("--study", "study", f"no study named {name!r} in {storage}")
    study = optuna.load_study(study_name=name, storage=storage)
    spec_json = study.user_attrs.get(ledger.STUDY_FILE_ATTR)
    if spec_json is None:
        raise InputError("--study", "study", f"study {name!r} was not created by calib")
    spec = parse_spec_json(spec_json)
    stage = stages.get(spec.stage)
    best = best_trial(study)
    if best is None:
        raise InputError("--study", "study", f"study {name!r} has no completed trial yet")
    try:
        dataset = load_dataset(Path(study.user_attrs.get(ledger.DATASET_PATH_ATTR)
                                    or dataset_path(spec.dataset, Path.cwd(), data_root)))
    except DatasetError as exc:
        raise InputError(str(exc.path), exc.field, exc.message) from exc
    params = ForceFieldParams.from_mapping(best.user_attrs["table_s1"])
    # the dried column acts on the dried beads (CBD 3.0 um)
    system = column_system(dataset, spec.fidelity_spec().n_beads, stage.column)
    ctx = ExportContext(system=system, lj_style=spec.lj_style, column=stage.column_title,
                        title=f"study {name}, best trial {best.number} (objective {best.value:.4g}), "
                              f"dataset {spec.dataset}, fidelity {spec.fidelity}")
    return render(params, ctx, fmt)
