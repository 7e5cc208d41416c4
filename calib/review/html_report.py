"""``calib report``: one self-contained HTML page (figures embedded, PNGs beside it) that
answers a reviewer's questions about a study.

Sections: summary (best trial, flags), convergence, observables against targets with
uncertainties, parameter importances, parameters at their bounds, one-dimensional model
profiles through the best set (which directions the data pin down), the Pareto front of a
multi-objective study, and failures with their reasons. Every figure comes from the ledger
alone (``calib.study.stored``); the page opens offline.

This module puts the page together (``SECTIONS`` in order, the navigation, the HTML around
them); ``calib.review.report_page`` holds the builder's core and HTML helpers,
``calib.review.report_sections`` the sections.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from calib import ledger
from calib.review.caveats import study_caveats
from calib.review.report_page import Report, _esc
from calib.review.report_sections import ReportSections
from calib.study.stored import StoredStudy

SECTIONS = ("summary", "convergence", "observables", "importances", "bounds", "profiles", "posterior", "pareto",
            "failures")


class _Builder(ReportSections):
    """The whole page: every section in turn, then the page around them."""

    def caveats_box(self) -> str:
        """The best set's caveats (``calib.review.caveats``), above every section."""
        c = study_caveats(self.study)
        if c is None:
            return ""
        items = "".join(f"<li>{_esc(line)}</li>" for line in c.lines)
        return (f'<section id="caveats" style="border:2px solid #c80;background:#fff8ec;padding:.2em 1em;'
                f'margin:1em 0"><h2 style="margin-top:.5em;border:none">Caveats of the best set (trial '
                f'{ledger.best_trial(self.study).number})</h2><ul>{items}</ul></section>')

    def write(self) -> Report:
        for step in (self.summary, self.convergence, self.observables, self.importances, self.bounds, self.profiles,
                     self.posterior, self.pareto_front, self.failures):
            step()
        box = self.caveats_box()
        nav = " · ".join(f'<a href="#{k}">{k}</a>' for k in (("caveats",) if box else ()) + SECTIONS)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>calib report: {_esc(self.study.study_name)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
h1{{font-size:1.5em}} h2{{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}}
table{{border-collapse:collapse;margin:.8em 0;font-size:.9em}} td,th{{border:1px solid #ddd;padding:.25em .6em;
text-align:left;vertical-align:top}} th{{background:#f4f4f4}} img{{max-width:100%}}
figure{{margin:1em 0}} figcaption{{font-size:.8em;color:#666}} nav{{font-size:.9em}}
</style></head><body>
<h1>calib report: study {_esc(self.study.study_name)}</h1>
<p>{_esc(self.s.storage if '@' not in self.s.storage else '(database)')} · generated {stamp}</p>
<nav>{nav}</nav>
{box}
{''.join(self.parts)}
</body></html>
"""
        self.report.html.write_text(page, encoding="utf-8")
        return self.report


def build_report(stored: StoredStudy, out: Path) -> Report:
    """Write ``out/report.html`` and its PNGs for ``stored`` (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    return _Builder(stored, out).write()
