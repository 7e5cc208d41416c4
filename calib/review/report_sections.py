"""The sections of the ``calib report`` page (``ReportSections``): summary (best trial,
flags), convergence, observables against targets with uncertainties, parameter importances,
parameters at their bounds, model profiles through the best set, the posterior of the free
keys, the Pareto front of a multi-objective study, and failures with their reasons; each
drawn from the ledger alone.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import optuna
from optuna.trial import TrialState

from calib.review.caveats import BOUND_FRACTION
from calib import ledger
from calib.optimize import confirmation as confirm
from calib.review import figures as rp
from calib.core.errors import InputError
from calib.core.plots import plot_porosity_vs_degree, plot_viscosity_curve
from calib.review.report_page import PageBuilder, _esc, _g, _img, _table
from calib.review.summary import pareto

optuna.logging.set_verbosity(optuna.logging.WARNING)

PROFILE_POINTS = 41
AT_BOUND = BOUND_FRACTION
"""A value within 1 % of its range (on the search scale) from a bound counts as at the bound."""
MIN_IMPORTANCE_TRIALS = 10
"""The fewest complete trials the report computes importances from (fANOVA's random forest
over fewer ranks noise: a stated minimum, not a measured one)."""


def min_importance_trials(n_keys: int) -> int:
    """Complete trials the importances need: 2 per free key, at least ``MIN_IMPORTANCE_TRIALS``."""
    return max(MIN_IMPORTANCE_TRIALS, 2 * n_keys)


class ReportSections(PageBuilder):
    """Each section of the page, one method each (``PageBuilder.section`` adds it)."""

    # -- sections ---------------------------------------------------------------------------
    def summary(self) -> None:
        t = [x for x in self.trials if not ledger.is_confirmation(x)]  # the confirmation has a row of its own
        n_fail = sum(1 for x in t if x.state == TrialState.FAIL and x.number not in self.lost)
        rows = [["study", self.study.study_name], ["stage", self.spec.stage], ["dataset", self.spec.dataset],
                ["fidelity", self.spec.fidelity], ["objective", f"{self.spec.objective.scalarisation} of "
                                                                 f"{', '.join(self.spec.objective.targets)}"],
                ["trials", f"{sum(1 for x in t if x.state == TrialState.COMPLETE)} complete, {n_fail} failed, "
                           f"{len(self.lost)} lost and re-proposed" + self._confirmations()]]
        body = ""
        if self.best is not None:
            b = self.best
            flags = []
            if b.user_attrs.get("equilibrated") is False:
                flags.append("NOT equilibrated: its observables had not converged")
            if b.user_attrs.get(ledger.OUTSIDE_ATTR):
                flags.append(f"outside the study's bounds: {', '.join(b.user_attrs[ledger.OUTSIDE_ATTR])}")
            edge = [f"{a.key} at its {'low' if u <= AT_BOUND else 'high'} bound" for a in self.s.space.axes
                    if a.key in b.params and ((u := a.to_unit(b.params[a.key])) <= AT_BOUND or u >= 1 - AT_BOUND)
                    and 0 <= u <= 1]
            flags += edge
            rows += [["best trial", f"{b.number} ({self.kind(b)}), objective {b.value:.4g}"],
                     ["flags", "; ".join(flags) or "none"]]
            checked = confirm.summary(self.study, b.number)
            rows.append(["confirmation at the target protocol", confirm.one_line(checked) if checked else
                         "none (calib optimize --confirm)"])
            table = b.user_attrs.get("table_s1") or {}
            free = set(self.s.space.keys)
            body = _table(["Table S1 key", "value", "free?"],
                          [[k, _g(v, 6), "free" if k in free else "fixed"] for k, v in table.items()])
        self.section("summary", "Summary", _table(["", ""], rows) + body,
                     "best trial " + (str(self.best.number) if self.best else "none"))

    def _confirmations(self) -> str:
        """The confirmation trials, counted apart from the calibration's (``calib.optimize.confirmation``)."""
        done = [x for x in self.trials if ledger.is_confirmation(x) and x.state.is_finished()
                and x.number not in self.lost]
        if not done:
            return ""
        failed = sum(1 for x in done if x.state == TrialState.FAIL)
        return f"; {len(done)} confirmation{'s' if len(done) > 1 else ''}" + (f" ({failed} failed)" if failed else "")

    def convergence(self) -> None:
        pts = [rp.TrialPoint(t.number, t.value if t.state == TrialState.COMPLETE else None, self.kind(t))
               for t in self.trials if t.state.is_finished() and t.number not in self.lost
               and not ledger.is_confirmation(t) and not t.user_attrs.get(ledger.STOPPED_ATTR)]
        stopped = sum(1 for t in self.trials if t.user_attrs.get(ledger.STOPPED_ATTR))
        if not pts:
            self.section("convergence", "Convergence", "<p>No finished trial yet.</p>", "empty")
            return
        p = rp.plot_convergence(self.figure("convergence.png"), pts, f"{self.study.study_name}: objective by trial")
        kinds: dict[str, int] = {}
        for x in pts:
            kinds[rp.kind_family(x.kind)] = kinds.get(rp.kind_family(x.kind), 0) + 1
        self.section("convergence", "Convergence", _img(p, "objective by trial, best so far") +
                     "<p>Trials by proposal: " + _esc(", ".join(f"{k}: {v}" for k, v in kinds.items())) + "</p>"
                     + (f"<p>Not drawn: {stopped} trial{'s' if stopped > 1 else ''} stopped above the early-stop "
                        "band (their objective is a forecast; <code>slurry.early_stop_band_rel</code>).</p>"
                        if stopped else ""), "plotted")

    def observables(self) -> None:
        if self.best is None:
            self.section("observables", "Observables against targets", "<p>No completed trial.</p>", "empty")
            return
        b = self.best
        errors = b.user_attrs.get("errors") or {}
        rsd = b.user_attrs.get("residual_sd") or {}
        targets = self.s.loaded.dataset.targets
        rows, scalars, body = [], [], ""
        for name, e in errors.items():
            if not isinstance(e, dict) or not isinstance(e.get("simulated"), (int, float)):
                continue
            tgt = targets.get(name)
            scale = (tgt.uncertainty if tgt is not None and tgt.uncertainty is not None else e["target"])
            sd_norm = (rsd.get(name) or [None])[0]
            sim_sd = abs(sd_norm * scale) if sd_norm is not None else None
            others = tuple(float(t.user_attrs["errors"][name]["simulated"]) for t in self.done[1:6]
                           if isinstance((t.user_attrs.get("errors") or {}).get(name), dict))
            scalars.append(rp.ScalarObservation(name, e.get("unit", ""), float(e["target"]),
                                                tgt.uncertainty if tgt is not None else None, float(e["simulated"]),
                                                sim_sd, others))
            prov = f"{tgt.provenance.kind}: {tgt.provenance.source}" if tgt is not None else "n/a"
            rows.append([name, f"{_g(e['simulated'])}" + (f" +- {_g(sim_sd, 2)}" if sim_sd else ""),
                         f"{_g(e['target'])}" + (f" +- {_g(tgt.uncertainty, 2)}" if tgt is not None and tgt.uncertainty
                                                 else " (no stated uncertainty)"),
                         e.get("unit", ""), f"{100 * float(e.get('rel_error', math.nan)):+.2f} %", prov])
        if scalars:
            p = rp.plot_scalar_targets(self.figure("observables.png"), scalars,
                                       f"best trial {b.number} against the targets")
            body += _img(p, "scalar observables of the best trial against their targets")
        body += _table(["observable", "best trial (+- s.e.)", "target (+- uncertainty)", "unit", "relative error",
                        "target provenance"], rows) if rows else ""
        rates = b.user_attrs.get("viscosity")
        if rates and self.s.loaded.curve is not None:
            pts = [SimpleNamespace(**{k: r.get(k) for k in ("rate_exp_per_s", "viscosity_pa_s", "sem_pa_s",
                                                            "converged")}) for r in rates]
            p = plot_viscosity_curve(self.figure("viscosity_curve.png"), pts, self.s.loaded.curve,
                                     f"best trial {b.number}: viscosity curve")
            body += _img(p, "simulated viscosity curve of the best trial against the measured one")
            body += f"<p>Measured curve: {_esc(self.study.user_attrs.get('viscosity_curve_source', 'n/a'))}</p>"
        for name, e in errors.items():
            if isinstance(e, dict) and isinstance(e.get("simulated"), list) and isinstance(e.get("degree_pct"), list):
                p = plot_porosity_vs_degree(self.figure(f"{name}.png"), e["degree_pct"], e["simulated"],
                                            list(zip(e["degree_pct"], e.get("measured") or [])),
                                            f"best trial {b.number}: {name}")
                body += _img(p, f"{name} of the best trial against the measured points")
        conv = [ln for ln in b.user_attrs.get("summary_lines") or [] if "converg" in ln]
        if conv:
            body += "<p>Convergence of the best trial: " + _esc(" ".join(conv)) + "</p>"
        self.section("observables", "Observables against targets", body or "<p>No scored observable.</p>",
                     "plotted" if body else "empty")

    def importances(self) -> None:
        keys = list(self.s.space.keys)
        need = min_importance_trials(len(keys))
        if len(self.done) < need or len(keys) < 2:
            self.section("importances", "Parameter importances",
                         f"<p>Not computed: importances need at least {need} complete trials at the target fidelity "
                         f"(2 per free key, at least {MIN_IMPORTANCE_TRIALS}) and 2 free keys; the study has "
                         f"{len(self.done)} and {len(keys)}. Fewer trials give a forest that ranks noise.</p>",
                         "not computed")
            return
        tmp = optuna.create_study(direction="minimize")
        # inside the search space only (a manual set outside the bounds is not part of it)
        tmp.add_trials([t for t in self.done if all(k in t.params and t.distributions[k]._contains(t.params[k])
                                                    for k in keys)])
        try:
            imp = optuna.importance.get_param_importances(
                tmp, params=keys, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except Exception as exc:  # too few distinct trials for the forest
            self.section("importances", "Parameter importances", f"<p>Not computed: {_esc(exc)}</p>", "not computed")
            return
        p = rp.plot_importances(self.figure("importances.png"), imp,
                                f"fANOVA importances over {len(self.done)} complete trials")
        self.section("importances", "Parameter importances", _img(p, "parameter importances (fANOVA)") +
                     "<p>Optuna's fANOVA evaluator (random forest, seed 0) over the complete trials at the target "
                     "fidelity: the share of the objective's variance each key explains.</p>", "plotted")

    def bounds(self) -> None:
        axes = self.s.space.axes
        done = [t for t in self.done if all(a.key in t.params for a in axes)]
        if not done:
            self.section("bounds", "Parameters at their bounds", "<p>No completed trial.</p>", "empty")
            return
        u = np.array([[a.to_unit(t.params[a.key]) for a in axes] for t in done])
        top = u[: min(10, len(done))]
        rows = []
        for i, a in enumerate(axes):
            bv = done[0].params[a.key]
            pos = u[0, i]
            where = "LOW bound" if pos <= AT_BOUND else ("HIGH bound" if pos >= 1 - AT_BOUND else "inside")
            rows.append([a.key, f"[{a.low:g}, {a.high:g}]" + (" log" if a.log else ""), _g(bv, 5),
                         f"{100 * pos:.0f} %", where,
                         f"{int((top[:, i] <= AT_BOUND).sum())} / {int((top[:, i] >= 1 - AT_BOUND).sum())} "
                         f"of {len(top)}"])
        shown = np.clip(u, -0.04, 1.04)  # a manual set outside the bounds is drawn at the edge
        p = rp.plot_positions(self.figure("bounds.png"), [a.key for a in axes], shown, np.arange(len(done)), shown[0])
        n_at = sum(1 for r in rows if r[4] != "inside")
        self.section("bounds", "Parameters at their bounds", _img(p, "free keys: trials in their bounds") +
                     _table(["key", "bounds", "best value", "position", "best trial", "top trials at low / high"],
                            rows) +
                     "<p>A best value at a bound means the optimum may lie beyond it: widen that bound, or refine "
                     "there by hand (<code>calib refine --scan KEY=LOW:HIGH:N --allow-outside-bounds</code>).</p>",
                     f"{n_at} at a bound")

    def profiles(self) -> None:
        from calib.optimize.surrogate import OBJECTIVE, Surrogate

        if self.best is None:
            self.section("profiles", "Model profiles", "<p>No completed trial.</p>", "empty")
            return
        try:
            model = Surrogate.fit(self.study, self.s.space)
        except InputError as exc:
            self.section("profiles", "Model profiles", f"<p>Not computed: {_esc(exc.message)}</p>", "not computed")
            return
        names = [o.name for o in model.outputs]
        scalar = [n for n in names if n != OBJECTIVE and "@" not in n]
        curve = [n for n in names if "@" in n]
        shown = [OBJECTIVE] + scalar + ([curve[0], curve[-1]] if curve and not scalar else [])
        cols = [names.index(n) for n in dict.fromkeys(shown)]
        u0 = np.array(self.s.space.to_unit(self.best.params))
        profiles, rows = [], []
        grid = np.linspace(0.0, 1.0, PROFILE_POINTS)
        for i, a in enumerate(self.s.space.axes):
            pts = np.repeat(u0[None, :], PROFILE_POINTS, axis=0)
            pts[:, i] = grid
            mean, sd = model.predict_unit(pts)
            outs = []
            for j in cols:
                o = model.outputs[j]
                mid = np.array([o.back(m) for m in mean[:, j]])
                lo = np.array([o.back(m - s) for m, s in zip(mean[:, j], sd[:, j])])
                hi = np.array([o.back(m + s) for m, s in zip(mean[:, j], sd[:, j])])
                outs.append((o.name, o.unit, None if o.name == OBJECTIVE else o.target, mid, lo, hi))
            j0 = names.index(OBJECTIVE)
            span = float(mean[:, j0].max() - mean[:, j0].min())
            noise = float(np.mean(sd[:, j0])) or 1e-12
            ratio = span / noise
            verdict = ("pinned" if ratio >= 3 else "weakly pinned" if ratio >= 1 else "not pinned (flat within "
                                                                                       "the model's uncertainty)")
            rows.append([a.key, f"{span:.3g}", f"{noise:.3g}", f"{ratio:.2g}", verdict])
            profiles.append(rp.Profile(a.key, a.log, np.array([a.from_unit(g) for g in grid]), self.best.params[a.key],
                                       tuple(outs)))
        p = rp.plot_profiles(self.figure("profiles.png"), profiles)
        self.section("profiles", "Model profiles through the best set (identifiability)",
                     _img(p, "the model along each free key through the best set") +
                     _table(["key", "span of ln objective along the key", "mean sd of ln objective", "span / sd",
                             "the data"], rows) +
                     f"<p>One Gaussian process per output fitted to the {model.n_trials} complete trials "
                     "(<code>calib predict</code> uses the same model, its sd widened where its held-out trials ask for it; "
                     "the bands here are the model's own sd). A key along which the model's objective "
                     "changes by several standard deviations is pinned down by the data; a flat profile within "
                     "the band means the targets do not determine it.</p>", f"{len(profiles)} keys")

    def pareto_front(self) -> None:
        names = sorted(self.spec.objective.targets)
        if len(names) < 2:
            self.section("pareto", "Pareto front", "<p>Single-objective study: no Pareto front.</p>",
                         "single objective")
            return
        done = [t for t in self.done if sorted((t.user_attrs.get("objective_errors") or {})) == names]
        if len(done) < 2:
            self.section("pareto", "Pareto front", "<p>Fewer than 2 complete trials.</p>", "empty")
            return
        pts = np.array([[abs(float(t.user_attrs["objective_errors"][n])) for n in names] for t in done])
        front_trials = {p["trial"] for p in pareto(self.study)}
        front = [i for i, t in enumerate(done) if t.number in front_trials]
        p = rp.plot_pareto(self.figure("pareto.png"), names, pts, front, [t.number for t in done])
        rows = [[done[i].number, *(f"{pts[i, k]:.3g}" for k in range(len(names))), _g(done[i].value)] for i in front]
        self.section("pareto", "Pareto front", _img(p, "non-dominated trials") +
                     _table(["trial", *(f"|{n} error|" for n in names), "objective"], rows),
                     f"{len(front)} non-dominated")

    def failures(self) -> None:
        failed = [t for t in self.trials if t.state == TrialState.FAIL and t.number not in self.lost]
        lost = [t for t in self.trials if t.number in self.lost]
        rows = [[t.number, self.kind(t), t.user_attrs.get(ledger.FIDELITY_ATTR, ""),
                 (t.user_attrs.get("fail_reason") or "no reason recorded")[:400],
                 t.user_attrs.get("calib_workdir", "")] for t in failed]
        body = (_table(["trial", "proposal", "fidelity", "reason", "directory (log.lammps)"], rows) if rows
                else "<p>No trial failed.</p>")
        if lost:
            body += (f"<p>{len(lost)} trial(s) lost with their driver and re-proposed: "
                     f"{_esc(', '.join(str(t.number) for t in lost))}.</p>")
        self.section("failures", "Failures", body, f"{len(failed)} failed")

    def posterior(self) -> None:
        from calib.optimize import posterior as pst

        title = "What the calibration leaves uncertain"
        if not self.spec.optimizer.posterior.enabled:
            self.section("posterior", title, "<p>Not computed: <code>optimizer.posterior.enabled</code> is false."
                                             "</p>", "not computed")
            return
        try:
            post = pst.of_study(self.study, self.s.space, self.s.loaded)
        except ValueError as exc:  # too few trials, or no target: said, not an error
            self.section("posterior", title, f"<p>Skipped: {_esc(exc)}.</p>", "skipped: too few trials or no target")
            return
        except Exception as exc:  # a model that cannot be fitted
            self.section("posterior", title, f"<p>Not computed: {_esc(exc)}.</p>", "not computed")
            return
        axes = self.s.space.axes
        phys = np.array([[a.from_unit(u) for a, u in zip(axes, row)] for row in post.samples])
        best = [self.best.params.get(a.key) if self.best else None for a in axes]
        p = rp.plot_posterior(self.figure("posterior.png"), [a.key for a in axes], phys,
                              [(i.low, i.high) for i in post.intervals], best, [a.log for a in axes])
        pct = round(100 * post.level)
        rows = [[i.key, _g(i.median), _g(i.low), _g(i.high), f"{100 * i.shrink:.0f} %",
                 _g(best[k]) if best[k] is not None else "n/a"] for k, i in enumerate(post.intervals)]
        dirs = [[d.label(), f"{100 * d.shrink:.0f} %", "not separated" if d.shrink > pst.RIDGE_SHRINK else "pinned"]
                for d in post.directions]
        where = {"dataset": "the dataset", "assumed": "assumed: optimizer.posterior.assumed_rel_uncertainty"}
        tg = "; ".join(f"{t.name}: {t.target:.4g} +- {t.sd:.2g} ({where[t.source]})" for t in post.targets)
        body = (_img(p, "posterior of the free keys") +
                _table(["key", "median", f"{pct} % low", f"{pct} % high", "sd / prior sd", "best trial"], rows) +
                _table(["direction (unit cube; log keys in log)", "sd / prior sd", "the data"], dirs) +
                f"<p>The posterior of the free keys given the targets ({_esc(tg)}), from the study's model of each "
                f"observable ({post.n_trials} complete trials at the target fidelity; its noise included), a "
                f"uniform prior on the bounds, {post.n_samples} draws of emcee (acceptance {post.acceptance:.2f}); "
                f"each key's interval leaves {(100 - pct) / 2:g} % of the draws on either side. "
                "A direction whose sd stays above half the prior's is a ridge the targets cannot separate: sets "
                "along it fit equally well, and only another observable can tell them apart. A pinned direction "
                "may only mean that the study confirmed the target in one region and never looked elsewhere: "
                "where no trial ran, the model cannot say the target fits (more Sobol trials, or "
                "<code>calib refine --scan</code>, map the rest). It is the model's posterior, for the protocol "
                "and fidelity the study ran at.</p>")
        self.section("posterior", title, body, f"{len(post.ridges)} of {len(post.directions)} directions not separated")
