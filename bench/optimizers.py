"""Samplers compared on calibration problems with a known answer. Prints figures; asserts nothing.

    .venv/bin/python bench/optimizers.py [--problems density emulator] [--samplers composite sobol ...]
                                         [--seeds 5] [--trials 15] [--emulator-seeds 20] [--json] [--plots DIR]

Problems (each with the default study's five free keys and bounds, ``studies/ssb_slurry.yaml``):

- ``density``: a real-LAMMPS twin at ``smoke`` size. The target is the model's own slurry
  density at hidden parameter values (``HIDDEN``), measured here in the same invocation and
  labelled ``synthetic`` in the dataset written for it (never experimental data). Each
  sampler runs ``--seeds`` studies of ``--trials`` trials through calib's real loop (local
  backend, Optuna SQLite ledger; MLflow off, it measures nothing here).
- ``emulator``: a GP fitted to every real trial the ``density`` problem recorded (density
  against the unit-cube parameters), its posterior mean taken as the simulator and its
  fitted noise added; the target is the emulator at ``HIDDEN``. Cheap, so ``--emulator-seeds``
  (default 20) studies per sampler give statistics the real runs cannot afford. The
  samplers see noisy values; their trials are judged on the noise-free error of the
  parameters they proposed (a lucky draw is not a calibration).

Printed per problem and sampler: trials to reach each tolerance on |relative density error|
(median and interquartile range over seeds; budget + 1 when never reached), the best error
at the full budget (median), core-seconds to each tolerance (real problems: the slurry
runs' wall time x cores, summed up to the trial that reached it), and the samplers' ratios
to ``sobol``, ``random`` and ``tpe``. One plot per problem (median best error against
trials) goes to ``--plots``; ``--json`` prints everything as one object.

Trial-to-trial noise: every trial places its beads with its own seed, so the density of one
parameter set scatters; the hidden set is run at two seeds and both are printed, which
bounds the tolerance any sampler can reach reliably.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calib.fidelity import BUILTIN_FIDELITIES  # noqa: E402
from calib.loop import LoopConfig, run_study  # noqa: E402
from calib.samplers import make_sampler  # noqa: E402
from calib.space import ParameterSpace  # noqa: E402
from calib.stages import SlurryTrial  # noqa: E402
from calib.study import DEFAULT_STUDY, SAMPLERS, MultiFidelitySpec, load_study  # noqa: E402
from sim_backends.backend import Task  # noqa: E402
from sim_backends.lammps.install import locate_lammps  # noqa: E402
from sim_backends.local import LocalBackend  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

HIDDEN = {"eps_AM": 40.0, "eps_SE": 300.0, "eps_CBD": 5.0, "sigma_AM": 1.03, "sigma_SE": 0.96}
"""The hidden parameter values of the twin problems (inside the default study's bounds)."""
TOLERANCES = (0.05, 0.02, 0.01, 0.005)
HIDDEN_SEEDS = (101, 202)


# --------------------------------------------------------------------------- problems


def measure_hidden(work: Path, fidelity: str, walls: list[float] | None = None) -> list[float]:
    """The model's density at HIDDEN, one run per seed of HIDDEN_SEEDS (g/cm^3); each run's
    wall time (s, one core) is appended to ``walls`` when given."""
    loaded = load_study(DEFAULT_STUDY, fidelity=fidelity)
    space = ParameterSpace.from_spec(loaded.spec.parameters)
    params = space.full_params(HIDDEN)
    inst, backend = locate_lammps(), LocalBackend()
    out = []
    for seed in HIDDEN_SEEDS:
        d = work / f"hidden_{fidelity}_{seed}"
        d.mkdir()
        trial = SlurryTrial(d, loaded, BUILTIN_FIDELITIES[fidelity], params, seed=seed)
        (run,) = trial.first_runs()
        result = backend.wait(backend.submit(Task(d, inst.argv(run.deck), inst.env, timeout_s=None)))
        if walls is not None:
            walls.append(result.wall_s)
        trial.next_runs()
        assert trial.slurry is not None
        out.append(trial.slurry.density_g_cm3)
    return out


def synthetic_study(work: Path, target: float, fidelity: str) -> Path:
    """The default study with a synthetic dataset whose slurry density is ``target``."""
    data_src = REPO / "experiments_data" / "ssb_nmc622_lpscl" / "dataset.yaml"
    ds = yaml.safe_load(data_src.read_text())
    ds["targets"] = {"slurry_density": {
        "value": float(target), "unit": "g/cm^3", "uncertainty": None,
        "provenance": {"source": f"calib model at hidden parameters {json.dumps(HIDDEN)}, fidelity {fidelity}, "
                                 f"mean of seeds {list(HIDDEN_SEEDS)} (bench/optimizers.py)",
                       "kind": "synthetic", "note": "a twin problem: the answer is known"}}}
    (work / "twin_data").mkdir(exist_ok=True)
    (work / "twin_data" / "dataset.yaml").write_text(yaml.safe_dump(ds, sort_keys=False))
    study = yaml.safe_load(DEFAULT_STUDY.read_text())
    study.update(dataset="twin_data/dataset.yaml", fidelity=fidelity)
    path = work / "twin_study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run_twin(work: Path, study_file: Path, sampler: str, seed: int, trials: int, parallel: int,
             multi_fidelity: dict | None = None) -> list[dict]:
    """One real study; per trial (in number order): relative error, core-seconds, params,
    fidelity and whether it counts for the tolerance (``at_target``: run at the study's
    fidelity). ``multi_fidelity``: the ``optimizer.multi_fidelity`` section to use."""
    loaded = load_study(study_file)
    opt = {"sampler": sampler}
    if multi_fidelity is not None:
        opt["multi_fidelity"] = MultiFidelitySpec.model_validate(multi_fidelity)
    tag = f"{sampler}{'_mf' if multi_fidelity else ''}"
    spec = loaded.spec.model_copy(update={
        "name": f"twin_{tag}_{seed}", "optimizer": loaded.spec.optimizer.model_copy(update=opt)})
    loaded = loaded.model_copy(update={"spec": spec})
    cfg = LoopConfig(storage=f"sqlite:///{work / 'twin.db'}", runs_dir=work / "runs", n_trials=trials,
                     parallel=parallel, seed=seed)
    res = run_study(loaded, cfg, LocalBackend(), locate_lammps())
    out = []
    for t in sorted(res.study.trials, key=lambda t: t.number):
        errs = t.user_attrs.get("errors", {}).get("slurry_density")
        fid = t.user_attrs.get("calib_fidelity", spec.fidelity)
        out.append({"rel_error": abs(errs["rel_error"]) if errs else math.inf,
                    "core_s": float(sum((t.user_attrs.get("run_wall_s") or {}).values())),
                    "unit": ParameterSpace.from_spec(spec.parameters).to_unit(t.params),
                    "density": errs["simulated"] if errs else None, "fidelity": fid,
                    "at_target": fid == spec.fidelity})
    return out


class Emulator:
    """GP posterior mean of density over the unit cube, plus the fitted noise."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        self.torch = torch
        X = torch.as_tensor(x, dtype=torch.float64)
        Y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1)
        self.model = SingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(self.model.likelihood, self.model))
        self.model.eval()
        noise = float(self.model.likelihood.noise.detach().mean()) * float(self.model.outcome_transform.stdvs) ** 2
        self.noise_sd = math.sqrt(noise)

    def mean(self, u: list[float]) -> float:
        with self.torch.no_grad():
            return float(self.model.posterior(self.torch.as_tensor([u], dtype=self.torch.float64)).mean)


def ledger_points(paths: list[Path]) -> dict[str, list[tuple[list[float], float]]]:
    """(unit-cube parameters, simulated density) of every trial in these Optuna SQLite
    ledgers with a density, by the fidelity it ran at."""
    space = ParameterSpace.from_spec(load_study(DEFAULT_STUDY).spec.parameters)
    out: dict[str, list[tuple[list[float], float]]] = {}
    for path in paths:
        url = f"sqlite:///{path}"
        for summary in optuna.get_all_study_summaries(url):
            st = optuna.load_study(study_name=summary.study_name, storage=url)
            study_fid = json.loads(st.user_attrs.get("calib_spec", "{}")).get("fidelity")
            for t in st.trials:
                e = t.user_attrs.get("errors", {}).get("slurry_density")
                fid = t.user_attrs.get("calib_fidelity", study_fid)
                if e and fid:
                    out.setdefault(fid, []).append((space.to_unit(t.params), e["simulated"]))
    return out


def run_emulated_mf(emus: dict[str, Emulator], costs: dict[str, float], target: float, seed: int, trials: int,
                    ladder: list[str] | None) -> list[dict]:
    """One composite study against per-fidelity emulators: at the target (last ladder
    fidelity) only when ``ladder`` is None, else multi-fidelity over ``ladder``. Trials are
    judged on the target emulator's noise-free error; each costs its fidelity's measured
    core-seconds."""
    target_fid = "dev"
    loaded = load_study(DEFAULT_STUDY, fidelity=target_fid)
    opt: dict = {"sampler": "composite"}
    if ladder is not None:
        opt["multi_fidelity"] = MultiFidelitySpec(ladder=ladder, costs_core_s={f: costs[f] for f in ladder})
    spec = loaded.spec.model_copy(update={"optimizer": loaded.spec.optimizer.model_copy(update=opt)})
    space = ParameterSpace.from_spec(spec.parameters)
    sampler = make_sampler(spec, space, seed, lag=1)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    rng = np.random.default_rng([seed, 11])
    out = []
    for _ in range(trials):
        t = study.ask(space.distributions())
        fid = (sampler.fidelity_of(t.number) if ladder is not None else None) or target_fid
        u = space.to_unit(t.params)
        rho = emus[fid].mean(u) + emus[fid].noise_sd * rng.standard_normal()
        e = (rho - target) / target
        t.set_user_attr("residuals", {"slurry_density": [e]})
        t.set_user_attr("objective_errors", {"slurry_density": e})
        t.set_user_attr("calib_fidelity", fid)
        study.tell(t, e * e)
        out.append({"rel_error": abs(emus[target_fid].mean(u) - target) / target, "core_s": costs[fid], "unit": u,
                    "density": rho, "fidelity": fid, "at_target": fid == target_fid})
    return out


def run_emulated(emu: Emulator, target: float, sampler: str, seed: int, trials: int) -> list[dict]:
    """One study against the emulator (Optuna in memory, the study's real sampler)."""
    loaded = load_study(DEFAULT_STUDY)
    spec = loaded.spec.model_copy(update={"optimizer": loaded.spec.optimizer.model_copy(update={"sampler": sampler})})
    space = ParameterSpace.from_spec(spec.parameters)
    study = optuna.create_study(sampler=make_sampler(spec, space, seed, lag=1), direction="minimize")
    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(trials):
        t = study.ask(space.distributions())
        u = space.to_unit(t.params)
        mean = emu.mean(u)
        rho = mean + emu.noise_sd * rng.standard_normal()
        e = (rho - target) / target
        t.set_user_attr("residuals", {"slurry_density": [e]})
        t.set_user_attr("objective_errors", {"slurry_density": e})
        study.tell(t, e * e)
        # judged on the noise-free error of the proposed parameters: a lucky draw is not a calibration
        out.append({"rel_error": abs(mean - target) / target, "measured_rel_error": abs(e), "core_s": 0.0, "unit": u,
                     "density": rho})
    return out


# --------------------------------------------------------------------------- statistics


def trials_to(run: list[dict], tol: float) -> int:
    """Trials until the first target-fidelity trial with |rel error| <= tol (every trial of a
    single-fidelity study is at the target); len(run) + 1 if never."""
    return next((i + 1 for i, r in enumerate(run) if r.get("at_target", True) and r["rel_error"] <= tol),
                len(run) + 1)


def core_s_to(run: list[dict], tol: float) -> float:
    n = trials_to(run, tol)
    return float(sum(r["core_s"] for r in run[:n])) if n <= len(run) else math.inf


def summarise(runs: dict[str, list[list[dict]]]) -> dict:
    out = {}
    for sampler, seeds in runs.items():
        row: dict = {"seeds": len(seeds), "trials": len(seeds[0]) if seeds else 0, "to_tolerance": {}}
        for tol in TOLERANCES:
            n = [trials_to(r, tol) for r in seeds]
            q1, med, q3 = np.percentile(n, [25, 50, 75])
            cs = [core_s_to(r, tol) for r in seeds]
            row["to_tolerance"][f"{tol:g}"] = {"median": float(med), "iqr": [float(q1), float(q3)],
                                               "reached": sum(x <= len(r) for x, r in zip(n, seeds)),
                                               "median_core_s": float(np.median(cs))}
        row["best_at_budget_median"] = float(np.median([min((x["rel_error"] for x in r if x.get("at_target", True)),
                                                            default=math.inf) for r in seeds]))
        row["target_trials_median"] = float(np.median([sum(x.get("at_target", True) for x in r) for r in seeds]))
        row["core_s_median"] = float(np.median([sum(x["core_s"] for x in r) for r in seeds]))
        out[sampler] = row
    return out


def print_table(problem: str, summary: dict) -> None:
    print(f"\n## {problem}: trials to |relative error| <= tolerance (median [IQR]; budget + 1 = never)")
    print("| sampler | " + " | ".join(f"<= {t:.1%}" for t in TOLERANCES) + " | best at budget | core-s to 1 % |")
    print("|---|" + "---|" * (len(TOLERANCES) + 2))
    for s, row in summary.items():
        cells = []
        for t in TOLERANCES:
            c = row["to_tolerance"][f"{t:g}"]
            cells.append(f"{c['median']:g} [{c['iqr'][0]:g}-{c['iqr'][1]:g}] ({c['reached']}/{row['seeds']})")
        cs = row["to_tolerance"]["0.01"]["median_core_s"]
        print(f"| {s} | " + " | ".join(cells) + f" | {row['best_at_budget_median']:.2%} | "
              + (f"{cs:.0f}" if math.isfinite(cs) and cs > 0 else "-") + " |")
    if "composite" in summary:
        print("\nratios of median trials to tolerance, composite / other (goal: <= 1/3 of sobol and random, "
              "<= 1/2 of tpe):")
        for other in ("sobol", "random", "tpe", "gp", "scalar"):
            if other in summary:
                r = [summary["composite"]["to_tolerance"][f"{t:g}"]["median"]
                     / summary[other]["to_tolerance"][f"{t:g}"]["median"] for t in TOLERANCES]
                print(f"- vs {other}: " + ", ".join(f"{t:.1%}: {x:.2f}" for t, x in zip(TOLERANCES, r)))


def print_mf_table(problem: str, summary: dict, single: str, multi: str) -> None:
    print(f"\n## {problem}: dev-fidelity tolerance, core-seconds and trials (median [IQR]; budget + 1 = never)")
    print("| sampler | " + " | ".join(f"core-s to {t:.1%}" for t in TOLERANCES)
          + " | trials to 2 % | dev trials | core-s in all | best dev at budget |")
    print("|---|" + "---|" * (len(TOLERANCES) + 4))
    for s_, row in summary.items():
        cells = []
        for t in TOLERANCES:
            c = row["to_tolerance"][f"{t:g}"]
            cs = c["median_core_s"]
            cells.append((f"{cs:.0f}" if math.isfinite(cs) else "never") + f" ({c['reached']}/{row['seeds']})")
        c2 = row["to_tolerance"]["0.02"]
        print(f"| {s_} | " + " | ".join(cells) + f" | {c2['median']:g} [{c2['iqr'][0]:g}-{c2['iqr'][1]:g}] | "
              f"{row['target_trials_median']:g} | {row['core_s_median']:.0f} | {row['best_at_budget_median']:.2%} |")
    if single in summary and multi in summary:
        print(f"\nratio of median core-seconds to the dev tolerance, {multi} / {single} (goal: <= 1/3):")
        print("- " + ", ".join(
            f"{t:.1%}: {summary[multi]['to_tolerance'][f'{t:g}']['median_core_s'] / summary[single]['to_tolerance'][f'{t:g}']['median_core_s']:.2f}"
            for t in TOLERANCES))


def plot(problem: str, runs: dict[str, list[list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, seeds in runs.items():
        best = np.array([np.minimum.accumulate([x["rel_error"] for x in r]) for r in seeds])
        ax.plot(np.arange(1, best.shape[1] + 1), np.median(best, axis=0), label=s)
    ax.set_yscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("best |relative density error| (median over seeds)")
    ax.set_title(f"{problem}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_core_s(problem: str, runs: dict[str, list[list[dict]]], path: Path) -> None:
    """Best target-fidelity error against core-seconds spent, every seed a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (s_, seeds) in enumerate(runs.items()):
        for i, r in enumerate(seeds):
            cost = np.cumsum([x["core_s"] for x in r])
            best = np.minimum.accumulate([x["rel_error"] if x.get("at_target", True) else math.inf for x in r])
            ax.step(cost, best, where="post", color=f"C{k}", alpha=0.6, label=s_ if i == 0 else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("core-seconds spent")
    ax.set_ylabel("best |relative density error| at dev")
    ax.set_title(problem)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def proposal_overhead(n: int = 100, d: int = 12, q: int = 4, repeats: int = 3) -> dict:
    """Seconds per composite and scalar q-batch proposal with ``n`` finished trials (10 %
    failed) over ``d`` parameters, one residual, the default acquisition settings; one
    thread, as in a study (the cores belong to LAMMPS)."""
    from calib import composite
    from calib.proposer import propose_gp_batch
    from calib.study import OptimizerSpec

    o = OptimizerSpec()
    rng = np.random.default_rng(0)
    x = rng.random((n, d))
    w = rng.normal(size=d)
    r = (x @ w - w.sum() / 2)[:, None] / 3 + 0.01 * rng.normal(size=(n, 1))
    feasible = rng.random(n) > 0.1
    data = composite.CompositeData(x[feasible], r[feasible], np.full((feasible.sum(), 1), np.nan), x, feasible,
                                   x[:1] + 0.01)
    layout = composite.ResidualLayout((("slurry_density", 1),), (1.0,))
    out: dict = {"n_trials": n, "n_params": d, "q": q}
    for name, fn in (("composite", lambda s: composite.propose_composite(
            data, layout, "weighted_sum", s, q=q, num_restarts=o.num_restarts, raw_samples=o.raw_samples)),
                     ("scalar", lambda s: propose_gp_batch(x[feasible], -np.log(r[feasible, 0] ** 2 + 1e-6), x[:1] + 0.01,
                                                           s, q, o.num_restarts, o.raw_samples))):
        fn(0)  # warm up (imports, first autograd graph)
        times = []
        for k in range(repeats):
            t = time.perf_counter()
            fn(k + 1)
            times.append(time.perf_counter() - t)
        out[name] = {"median_s": statistics.median(times), "max_s": max(times)}
    return out


# --------------------------------------------------------------------------- main


SINGLE, MULTI = "composite, dev only", "composite, smoke -> dev"


def run_mf(args: argparse.Namespace, work: Path, report: dict, t0: float) -> None:
    """The multi-fidelity problems: target at ``dev``, ladder smoke -> dev, costs measured here."""
    walls: dict[str, list[float]] = {"smoke": [], "dev": []}
    hidden = measure_hidden(work, "dev", walls["dev"])
    measure_hidden(work, "smoke", walls["smoke"])
    costs = {f: statistics.mean(w) for f, w in walls.items()}
    target = statistics.mean(hidden)
    report["mf"] = {"hidden_dev_density_by_seed": hidden, "costs_core_s": costs, "target": target}
    print(f"\nmulti-fidelity: hidden parameters at dev: {hidden} g/cm^3 (target {target:.4f}, synthetic); "
          f"measured cost of one run: smoke {costs['smoke']:.1f} core-s, dev {costs['dev']:.1f} core-s")
    mf = {"ladder": ["smoke", "dev"], "costs_core_s": costs}
    points: dict[str, list[tuple[list[float], float]]] = {}
    if "mf" in args.problems:
        mwork = work / "mf"
        mwork.mkdir()
        study_file = synthetic_study(mwork, target, "dev")
        runs: dict[str, list[list[dict]]] = {SINGLE: [], MULTI: []}
        for seed in range(args.mf_seeds):
            for name, trials, section in ((SINGLE, args.mf_single_trials, None), (MULTI, args.mf_trials, mf)):
                r = run_twin(mwork, study_file, "composite", seed, trials, args.parallel, multi_fidelity=section)
                runs[name].append(r)
                for x in r:
                    if x["density"] is not None:
                        points.setdefault(x["fidelity"], []).append((x["unit"], x["density"]))
                print(f"  mf / {name} / seed {seed}: {sum(x['core_s'] for x in r):.0f} core-s, "
                      f"{sum(x['at_target'] for x in r)} dev trials ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        summ = summarise(runs)
        report["problems"]["mf"] = summ
        print_mf_table("multi-fidelity twin (real LAMMPS, target dev)", summ, SINGLE, MULTI)
        plot_core_s("multi-fidelity twin (real LAMMPS)", runs, args.plots / "mf.png")
    if "mf-emulator" in args.problems:
        for fid, pts in ledger_points(args.from_ledger).items():
            points.setdefault(fid, []).extend(pts)
        if any(len(points.get(f, [])) < 10 for f in ("smoke", "dev")):
            raise SystemExit("the multi-fidelity emulator needs recorded smoke and dev trials: run the mf problem "
                             "or pass --from-ledger")
        emus = {f: Emulator(np.array([p for p, _ in points[f]]), np.array([d for _, d in points[f]]))
                for f in ("smoke", "dev")}
        space = ParameterSpace.from_spec(load_study(DEFAULT_STUDY).spec.parameters)
        emu_target = emus["dev"].mean(space.to_unit(HIDDEN))
        report["mf_emulator"] = {f: {"points": len(points[f]), "noise_sd_g_cm3": emus[f].noise_sd} for f in emus}
        print(f"\nmulti-fidelity emulator: GPs on {len(points['smoke'])} smoke and {len(points['dev'])} dev trials "
              f"(noise sd {emus['smoke'].noise_sd:.3f} and {emus['dev'].noise_sd:.3f} g/cm^3); "
              f"target {emu_target:.4f}")
        runs = {SINGLE: [], MULTI: []}
        for seed in range(args.mf_emulator_seeds):
            runs[SINGLE].append(run_emulated_mf(emus, costs, emu_target, seed, args.mf_single_trials + 2, None))
            runs[MULTI].append(run_emulated_mf(emus, costs, emu_target, seed, args.mf_emulator_trials,
                                               ["smoke", "dev"]))
            print(f"  mf-emulator / seed {seed} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        summ = summarise(runs)
        report["problems"]["mf-emulator"] = summ
        print_mf_table("multi-fidelity emulator (GPs fitted to real smoke and dev trials)", summ, SINGLE, MULTI)
        plot_core_s("multi-fidelity emulator", runs, args.plots / "mf_emulator.png")



def run_single(args: argparse.Namespace, work: Path, report: dict, t0: float) -> None:
    """The single-fidelity problems (density twin, emulator) at ``--fidelity``."""
    hidden = measure_hidden(work, args.fidelity)
    target = statistics.mean(hidden)
    report["hidden_density_by_seed"] = hidden
    print(f"hidden parameters {HIDDEN}: density {hidden} g/cm^3 at seeds {list(HIDDEN_SEEDS)} "
          f"(seed-to-seed {abs(hidden[0] - hidden[1]) / target:.2%}); target {target:.4f} (synthetic)")
    twin_points: list[tuple[list[float], float]] = []
    if "density" in args.problems:
        study_file = synthetic_study(work, target, args.fidelity)
        runs: dict[str, list[list[dict]]] = {}
        for s in args.samplers:
            runs[s] = []
            for seed in range(args.seeds):
                r = run_twin(work, study_file, s, seed, args.trials, args.parallel)
                runs[s].append(r)
                twin_points += [(x["unit"], x["density"]) for x in r if x["density"] is not None]
                print(f"  density / {s} / seed {seed}: best {min(x['rel_error'] for x in r):.2%} after "
                      f"{trials_to(r, 0.01)} trials to 1 % ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        summ = summarise(runs)
        report["problems"]["density"] = summ
        print_table("density (real LAMMPS twin, smoke)", summ)
        plot("density twin (real LAMMPS)", runs, args.plots / "density.png")
    if "emulator" in args.problems:
        twin_points += ledger_points(args.from_ledger).get(args.fidelity, [])
        if len(twin_points) < 10:
            raise SystemExit("the emulator needs recorded real trials: run the density problem or pass --from-ledger")
        emu = Emulator(np.array([p for p, _ in twin_points]), np.array([d for _, d in twin_points]))
        space = ParameterSpace.from_spec(load_study(DEFAULT_STUDY).spec.parameters)
        emu_target = emu.mean(space.to_unit(HIDDEN))
        report["emulator"] = {"points": len(twin_points), "noise_sd_g_cm3": emu.noise_sd, "target": emu_target}
        print(f"\nemulator: GP on {len(twin_points)} real trials, noise sd {emu.noise_sd:.4f} g/cm^3, "
              f"target {emu_target:.4f}")
        runs = {}
        for s in args.samplers:
            runs[s] = [run_emulated(emu, emu_target, s, seed, args.emulator_trials)
                       for seed in range(args.emulator_seeds)]
            print(f"  emulator / {s}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        summ = summarise(runs)
        report["problems"]["emulator"] = summ
        print_table("emulator (GP fitted to the real trials)", summ)
        plot("emulator", runs, args.plots / "emulator.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", nargs="+", default=["density", "emulator", "mf", "mf-emulator"],
                    choices=["density", "emulator", "mf", "mf-emulator"])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--emulator-seeds", type=int, default=20)
    ap.add_argument("--emulator-trials", type=int, default=20)
    ap.add_argument("--fidelity", default="smoke")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--from-ledger", type=Path, nargs="+", default=[],
                    help="Optuna SQLite ledgers whose slurry trials the emulators are fitted to as well "
                         "(each trial at the fidelity it ran at)")
    ap.add_argument("--mf-seeds", type=int, default=3)
    ap.add_argument("--mf-trials", type=int, default=20, help="trials of a multi-fidelity twin study")
    ap.add_argument("--mf-single-trials", type=int, default=10, help="trials of a dev-only twin study")
    ap.add_argument("--mf-emulator-seeds", type=int, default=10)
    ap.add_argument("--mf-emulator-trials", type=int, default=30)
    ap.add_argument("--plots", type=Path, default=Path("runs/bench_optimizers"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--overhead-only", action="store_true", help="only time one proposal (100 trials x 12 keys, q 4)")
    args = ap.parse_args()
    if args.overhead_only:
        oh = proposal_overhead()
        print(f"proposal overhead, {oh['n_trials']} trials x {oh['n_params']} parameters, q = {oh['q']}: "
              + ", ".join(f"{k} {v['median_s']:.2f} s (max {v['max_s']:.2f})" for k, v in oh.items()
                          if isinstance(v, dict)) + " (goal: under 2 s)")
        if args.json:
            print(json.dumps(oh))
        return
    args.plots.mkdir(parents=True, exist_ok=True)
    report: dict = {"hidden": HIDDEN, "fidelity": args.fidelity, "tolerances": TOLERANCES, "problems": {}}
    work = Path(tempfile.mkdtemp(prefix="calib_bench_opt_"))
    print(f"# samplers on twin problems; work in {work}", file=sys.stderr)
    t0 = time.perf_counter()
    if {"density", "emulator"} & set(args.problems):
        run_single(args, work, report, t0)
    if "mf" in args.problems or "mf-emulator" in args.problems:
        run_mf(args, work, report, t0)
    oh = proposal_overhead()
    report["proposal_overhead"] = oh
    print(f"\nproposal overhead, {oh['n_trials']} trials x {oh['n_params']} parameters, q = {oh['q']}: "
          + ", ".join(f"{k} {v['median_s']:.2f} s (max {v['max_s']:.2f})" for k, v in oh.items() if isinstance(v, dict))
          + " (goal: under 2 s)")
    report["wall_s"] = time.perf_counter() - t0
    print(f"\nplots in {args.plots}; {report['wall_s']:.0f} s")
    if args.json:
        print(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
