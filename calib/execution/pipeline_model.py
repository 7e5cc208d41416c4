"""What ``calib pipeline`` runs with and gives back: the parameter columns (``PipelineParams``,
from ``params_from``), the result of one placement or of several combined
(``PipelineResult``), and the failure of a stage (``PipelineFailed``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sim_backends.lammps.forcefield import TABLE_S1_DRIED, TABLE_S1_SLURRY, ForceFieldParams

from calib import stages
from calib.core.errors import InputError

class PipelineFailed(RuntimeError):
    """A stage of the pipeline failed; ``stage`` and ``reason`` say which and why."""

    def __init__(self, stage: str, reason: str, partial: "PipelineResult | None" = None) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.partial = partial


@dataclass(frozen=True)
class PipelineParams:
    """The force field of each Table S1 column and where it came from."""

    slurry: ForceFieldParams
    dried: ForceFieldParams
    source: str

    def column(self, name: str) -> ForceFieldParams:
        """The set for a stage's ``column`` (``slurry`` or ``dried``)."""
        return self.slurry if name == "slurry" else self.dried


def params_from(option: str, storage: str) -> PipelineParams:
    """``table-s1`` or ``best:SLURRY_STUDY,DRYING_STUDY`` (best trials in ``storage``; the
    dried set also serves calendering)."""
    if option == "table-s1":
        return PipelineParams(TABLE_S1_SLURRY, TABLE_S1_DRIED, "table-s1 (seed Table S1 slurry and dried columns)")
    if option.startswith("best:"):
        names = [n.strip() for n in option[5:].split(",")]
        if len(names) != 2 or not all(names):
            raise InputError("--params", "params", "give best:SLURRY_STUDY,DRYING_STUDY")
        import optuna

        from calib import ledger

        sets = []
        for n in names:
            if not ledger.study_exists(n, storage):
                raise InputError("--params", "params", f"no study {n!r} in {storage}")
            study = optuna.load_study(study_name=n, storage=storage)
            stage = json.loads(study.user_attrs.get(ledger.SPEC_ATTR, "{}")).get("stage")
            want = "slurry" if not sets else "dried"
            if stage is None:
                raise InputError("--params", "params", f"study {n!r} in {storage} was not made by calib")
            if stage not in stages.names() or stages.get(stage).column != want:
                raise InputError("--params", "params", f"study {n!r} is a {stage!r} study; best:A,B needs a study A "
                                                       "of the slurry column (slurry) and a study B of the dried "
                                                       "column (drying, calendering, characterise)")
            best = ledger.best_trial(study)
            if best is None:
                raise InputError("--params", "params", f"study {n!r} has no completed trial")
            sets.append((ForceFieldParams.from_mapping(best.user_attrs["table_s1"]), f"{n} trial {best.number}"))
        return PipelineParams(sets[0][0], sets[1][0], f"best of {sets[0][1]} and {sets[1][1]}")
    raise InputError("--params", "params", f"unknown parameter set {option!r} (table-s1 or best:SLURRY,DRYING)")


@dataclass
class PipelineResult:
    """Everything the pipeline measured (JSON-able through ``summary``): each stage's record
    under its ``pipeline_key`` (``slurry``, ``dried``, ``degrees``)."""

    workdir: Path
    records: dict = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    failed_degrees: dict[str, str] = field(default_factory=dict)
    """Degrees left out (``keep_going``), with the reason, keyed by the degree in %."""
    bead_counts: dict[str, int] = field(default_factory=dict)
    solids_content: float | None = None
    """Implied solids content of the slurry (dry mass / slurry mass)."""
    stage: str = ""
    """The stage running (empty once all have finished)."""
    runs: dict[str, list] = field(default_factory=dict)
    """Stage name -> its runs (``stages.Run``), for the MLflow artifacts."""

    @property
    def slurry(self) -> dict:
        return self.records.get("slurry", {})

    @property
    def dried(self) -> dict:
        return self.records.get("dried", {})

    @property
    def degrees(self) -> list[dict]:
        return self.records.get("degrees", [])

    def summary(self, params: PipelineParams, fidelity: str) -> dict:
        por = [d["porosity"] for d in self.degrees]
        return {"workdir": str(self.workdir), "fidelity": fidelity, "params": params.source,
                "table_s1": {"slurry": params.slurry.as_dict(), "dried": params.dried.as_dict()},
                "bead_counts": self.bead_counts, "solids_content": self.solids_content,
                "failed_degrees": self.failed_degrees, "slurry": self.slurry, "dried": self.dried,
                **{k: v for k, v in self.records.items() if k not in ("slurry", "dried")},
                "degrees": self.degrees, "porosity_decreasing": all(b < a for a, b in zip(por, por[1:])),
                "wall_s": self.wall_s, "files": self.files}
