"""The core of the ``calib report`` page: what ``build_report`` wrote (``Report``), the HTML
helpers, and ``PageBuilder``, which holds the study the sections read (its trials, the lost
ones, the complete ones at the target fidelity, best first) and collects each section's HTML,
status and figures.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import FrozenTrial

from calib import ledger
from calib.study.stored import StoredStudy


@dataclass
class Report:
    """What ``build_report`` wrote: the page, its PNGs, and per section a short status."""

    html: Path
    figures: list[Path] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)


def _esc(x: object) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(alt)}"><figcaption>{_esc(alt)} ' \
           f'({_esc(path.name)})</figcaption></figure>'


def _g(v: object, digits: int = 4) -> str:
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"


class PageBuilder:
    """The study a report is built from, and the sections written so far."""

    def __init__(self, stored: StoredStudy, out: Path) -> None:
        self.s, self.out = stored, out
        self.spec = stored.loaded.spec
        self.study = stored.study
        self.trials = self.study.get_trials(deepcopy=False)
        self.lost = ledger.lost_numbers(self.trials)
        self.done = sorted(ledger.at_target(self.study), key=lambda t: t.value)
        self.best = self.done[0] if self.done else None
        self.report = Report(out / "report.html")
        self.parts: list[str] = []

    def kind(self, t: FrozenTrial) -> str:
        return ledger.proposal_kind(t.user_attrs, t.number, self.spec.optimizer.sampler, self.spec.optimizer.n_initial)

    def section(self, key: str, title: str, body: str, status: str) -> None:
        self.report.sections[key] = status
        self.parts.append(f'<section id="{key}"><h2>{_esc(title)}</h2>{body}</section>')

    def figure(self, name: str) -> Path:
        p = self.out / name
        self.report.figures.append(p)
        return p
