"""The ledger's labels: the names of the trial and study attributes calib writes (part of
the ledger format), and how a trial was proposed as its attributes tell (``proposal_kind``).

User attributes calib writes on each trial (names are part of the ledger format):
``calib_driver`` (host/boot-id/pid-namespace:pid:start-ticks of the driving process), ``calib_workdir``,
``calib_jobs`` (backend:job-id of the current phase's runs), ``calib_seed``, ``table_s1``,
``calib_fidelity``, ``fail_reason``, ``calib_lost`` (True: the slot is re-proposed),
``proposal_s``, ``calib_confirms`` and ``calib_confirm`` (a transfer confirmation,
``calib.optimize.confirmation``), ``core_s``, ``wall_s`` (the first run) and ``run_wall_s`` (every run); from
the stage's ``Score`` (``calib.stages.base.Score.ledger_attrs``): ``observables``,
``errors`` (per objective), ``objective_errors`` (signed error per objective: what
scalarisations and the Pareto front use), ``residuals`` and ``residual_sd`` (what the
composite optimiser models), ``penalty``, ``equilibrated``, ``report`` (the JSON report's
``best_observables``), ``summary_lines`` and the stage's own (slurry: ``viscosity`` per
shear rate, ``density_converged``, ``density_convergence``; drying: ``profiles``;
calendering: ``calendering``, ``profiles_by_degree``; characterise: ``characterisation``).
Study attributes: the identity (``calib_spec``), the study file, the dataset path, the
target fidelity, ``lineage`` and the stage's own (``viscosity_curve_source``).
"""

from __future__ import annotations

SPEC_ATTR = "calib_spec"
STUDY_FILE_ATTR = "calib_study_spec"
DATASET_PATH_ATTR = "calib_dataset_path"
STUDY_PATH_ATTR = "calib_study_path"
"""Study attribute: the study file the study was created from (relative paths in it resolve there)."""
IDENTITY_KEYS = ("stage", "dataset", "fidelity", "space", "physics")
UID_ATTR = "calib_uid"
TARGET_FIDELITY_ATTR = "calib_target_fidelity"
"""Study attribute: the fidelity the study's answer is judged at."""
FIDELITY_ATTR = "calib_fidelity"
"""Trial attribute: the fidelity the trial ran at."""
MANUAL_ATTR = "calib_manual"
"""Trial attribute of a manual trial (``calib refine``): where its set came from (``--set``, ``--file F``, ``--scan K``)."""
OUTSIDE_ATTR = "calib_outside_bounds"
"""Trial attribute: the free keys a manual set put outside the study's bounds."""
FALLBACK_ATTR = "calib_proposal_fallback"
"""Why the model could not propose this trial (its GP fit or acquisition failed): it got a
quasi-random (Sobol) point instead."""
CONFIRM_ATTR = "calib_confirms"
"""Trial attribute of a transfer confirmation (``calib.optimize.confirmation``): the number of the trial
whose set it runs again at the target protocol on fresh placements."""
CONFIRM_SETTINGS_ATTR = "calib_confirm"
"""Trial attribute of a transfer confirmation: its compression and replicates."""
CONFIRM_FIDELITY = "confirm"
"""The fidelity name a confirmation trial records (``FIDELITY_ATTR``)."""
CARRIED_ATTRS = (FIDELITY_ATTR, MANUAL_ATTR, OUTSIDE_ATTR, CONFIRM_ATTR, CONFIRM_SETTINGS_ATTR)
"""Trial attributes a re-proposed trial keeps from the lost one (its fidelity; that it was
a manual set, ``calib.optimize.manual_sets``, or a confirmation, ``calib.optimize.confirmation``)."""
STOPPED_ATTR = "stopped_early"
"""Trial attribute of a trial its stage stopped before its protocol ended (``Score.stopped``:
why); its observables bound the protocol's from one side, so it is data for the proposer
but never the study's answer (``at_target`` leaves it out)."""
POSTERIOR_ATTR = "calib_posterior"
"""Study attribute: the posterior of the free keys when the study last ended
(``calib.optimize.posterior.Posterior.as_dict``), or ``{"not_computed": why}``."""
REPROPOSED_ATTR = "calib_reproposed_from"
"""Trial attribute: the number of the lost trial whose parameters this trial re-runs."""
RESUME_ATTR = "calib_resume"
"""Trial attribute of a re-proposed trial: where the lost trial ran (``workdir``) and its
backend jobs (``jobs``), so that a driver on a backend whose jobs outlive their driver
re-attaches to them instead of running the trial again."""


def proposal_kind(attrs: dict, number: int, sampler: str, n_initial: int) -> str:
    """How trial ``number`` (its ledger attributes ``attrs``) was proposed: ``manual (...)``
    (``calib refine``), ``re-attached (trial n)``, ``re-proposed (trial n)`` (a lost trial's
    point run again), ``sobol (no model)``, ``quasi-random fallback (model failed)`` / ``random (no model)``, ``initial design`` or
    ``model``."""
    if attrs.get(CONFIRM_ATTR) is not None:
        return f"confirmation (trial {attrs[CONFIRM_ATTR]})"
    if attrs.get(MANUAL_ATTR):
        return f"manual ({attrs[MANUAL_ATTR]})"
    if attrs.get("calib_reattached"):
        return f"re-attached (trial {attrs.get(REPROPOSED_ATTR)})"
    if attrs.get(REPROPOSED_ATTR) is not None:
        return f"re-proposed (trial {attrs[REPROPOSED_ATTR]})"
    if sampler in ("sobol", "random"):
        return f"{sampler} (no model)"
    if attrs.get(FALLBACK_ATTR):
        return "quasi-random fallback (model failed)"
    return "initial design" if number < n_initial else "model"
