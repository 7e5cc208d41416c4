"""Helpers to look at the MLflow 3.17 UI with a Selenium WebDriver (``services.chromium``),
the way a user does: every helper navigates itself (``base_url`` is the server's
``http://127.0.0.1:PORT``), waits with explicit conditions, and raises ``AssertionError``
(with the page's URL and visible text) when what it waits for does not appear.

Found by looking at MLflow 3.17.2's DOM and screenshots:

- ``#/experiments/ID`` opens the GenAI "Overview" (traces usage) page, whatever the
  experiment's ``mlflow.experimentKind`` tag says: the UI follows the sidebar's
  "GenAI / Model training" switch (``?workflowType=genai|machine_learning``, remembered in
  localStorage ``mlflow.workflowType_v1``, default ``genai``). ``#/experiments/ID/runs``
  opens the runs table in either mode. ``prepare`` switches to "Model training".
- On a first visit the "MLflow Assistant" side panel opens by itself and takes a third of
  the width; ``prepare`` marks it as already shown.
- A run page ``#/experiments/ID/runs/RUN_ID`` has tabs Overview, Model metrics, System
  metrics, Traces, Artifacts (``.../model-metrics``, ``.../artifacts``). Overview shows the
  description (``mlflow.note.content`` rendered as markdown, folded after a few lines),
  "Metrics (N)" (last values) and "Parameters (N)" tables, and on the right "About this run"
  (with child-run links) and "Tags": one chip ``key: value`` per tag, ``mlflow.*`` tags
  hidden, long values cut with an ellipsis on screen (full in the chip's ``title``).
- Metric charts are Plotly SVGs (``.js-plotly-plot g.trace.scatter path.js-line``).
- The artifact tree does not follow ``.../artifacts/PATH`` in the URL: a file is opened by
  clicking its tree node (``[data-testid=artifact-tree-node][artifact-name=BASENAME]``).
  Text is previewed for extensions txt, log, json, yaml, ... (not ``log.lammps``,
  ``in.slurry``, ``final.data``: "Select a file to preview").
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from pathlib import Path

from selenium.common.exceptions import (ElementClickInterceptedException, StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 60.0  # seconds; the UI's first load on a busy 2-core machine takes a few seconds

# localStorage values (MLflow's ``useLocalStorage``: key ``NAME_v1``, JSON value) that make
# the UI open experiments on the runs table and keep the assistant panel closed.
UI_STATE = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.detectIssues.guidanceShown_v1": True,
}


# --------------------------------------------------------------------------- generic


def wait_for(driver, condition, what: str, timeout: float = TIMEOUT):
    """``condition(driver)``'s first truthy value, polled until ``timeout``; an
    ``AssertionError`` naming ``what``, the URL and the end of the page's text if none."""
    def poll(d):
        try:
            return condition(d)
        except StaleElementReferenceException:  # React re-rendered under us: poll again
            return False
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(poll)
    except TimeoutException:
        raise AssertionError(f"MLflow UI: {what} did not appear in {timeout:.0f} s at {driver.current_url}\n"
                             f"page text (end):\n{page_text(driver)[-3000:]}") from None


def wait_stable(driver, quiet: float = 1.0, timeout: float = TIMEOUT) -> str:
    """Wait until the page's text has not changed for ``quiet`` seconds (the UI's
    follow-up requests answered); that text."""
    seen = {"text": None, "since": 0.0}

    def settled(d):
        now, text = time.monotonic(), page_text(d)
        if text != seen["text"]:
            seen.update(text=text, since=now)
            return False
        return text if now - seen["since"] >= quiet else False
    return wait_for(driver, settled, "a settled page", timeout)


def page_text(driver) -> str:
    """The visible text of the page's main area (the whole body where there is none)."""
    try:
        found = driver.find_elements(By.TAG_NAME, "main") or driver.find_elements(By.TAG_NAME, "body")
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def click(driver, element) -> None:
    """Scroll ``element`` to the middle of the window and click it (with JavaScript where
    something lies over it)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'nearest'})", element)
    try:
        element.click()
    except ElementClickInterceptedException:
        driver.execute_script("arguments[0].click()", element)


def screenshot(driver, folder: Path | str, name: str) -> Path:
    """Save the window as ``folder/name.png`` (folder created); its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    driver.save_screenshot(str(path))
    return path


def prepare(driver, base_url: str, state: dict | None = None) -> None:
    """Set the UI's remembered state (``UI_STATE``, or ``state``) in the localStorage of
    ``base_url``'s origin; done once per origin and driver by the ``open_*`` helpers."""
    done = driver.__dict__.setdefault("_calib_mlflow_prepared", set())
    if state is None and base_url in done:
        return
    driver.get(base_url.rstrip("/") + "/health")  # any page of the origin, without the app
    for key, value in (UI_STATE if state is None else state).items():
        driver.execute_script("localStorage.setItem(arguments[0], arguments[1])", key, json.dumps(value))
    done.add(base_url)


def _go(driver, base_url: str, fragment: str) -> None:
    """Load the app afresh at ``#/fragment`` (a hash change alone would keep the previous
    page's elements around while the new ones load)."""
    prepare(driver, base_url)
    driver.get("about:blank")
    driver.get(f"{base_url.rstrip('/')}/#/{fragment.lstrip('/')}")


# --------------------------------------------------------------------------- experiment


_RUN_LINK = '.ag-root-wrapper a[href*="/runs/"]'


def open_experiment(driver, base_url: str, experiment_id: str, expand: bool = False) -> list[str]:
    """Open the experiment's runs table (``#/experiments/ID/runs``); the run names it
    shows, top to bottom. Child runs are folded under their parent (a "+" button left of
    the parent's name); ``expand`` unfolds them all first."""
    _go(driver, base_url, f"experiments/{experiment_id}/runs")
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, _RUN_LINK)
             or "No runs" in page_text(d), f"experiment {experiment_id}'s runs table")
    if expand:
        for _ in range(100):  # unfolding a parent may show further folded children
            folded = [b for b in driver.find_elements(By.CSS_SELECTOR, '.ag-root-wrapper button[data-component-id*='
                                                      '"runnamecellrenderer"]')
                      if b.find_elements(By.CSS_SELECTOR, 'path[d^="M7.25 7.25V4.5"]')]  # the "+" icon
            if not folded:
                break
            n = len(driver.find_elements(By.CSS_SELECTOR, _RUN_LINK))
            click(driver, folded[0])
            wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, _RUN_LINK)) > n, "the child runs")
    return driver.execute_script("""
        const links = [...document.querySelectorAll(arguments[0])];
        const idx = a => Number((a.closest('.ag-row') || {}).getAttribute?.('row-index') ?? 0);
        return links.sort((a, b) => idx(a) - idx(b)).map(a => a.textContent.trim());""", _RUN_LINK)


# the status icon MLflow 3.17 draws in the "Created" cell of a FINISHED run (a check in a circle)
_FINISHED_ICON = 'path[d^="M11.53 6.53"]'


def shown_runs(driver) -> list[dict]:
    """The rows of an open runs table (``open_experiment``), top to bottom: ``{"name": the
    run's name, "finished": its "Created" cell shows FINISHED's status icon, "duration": the
    Duration cell's text ("" while the run has none)}``. A row's cells sit in several
    containers (pinned and scrolled columns), matched by the row's index."""
    return driver.execute_script("""
        const out = [];
        for (const a of document.querySelectorAll(arguments[0])) {
            const row = a.closest('.ag-row');
            if (!row) continue;
            const idx = row.getAttribute('row-index');
            const cell = id => document.querySelector(`.ag-row[row-index="${idx}"] [col-id="${id}"]`);
            const created = cell('runDateAndNestInfo'), duration = cell('duration');
            out.push({name: a.textContent.trim(), index: Number(idx),
                      finished: !!(created && created.querySelector(arguments[1])),
                      duration: duration ? duration.textContent.trim() : ''});
        }
        return out.sort((x, y) => x.index - y.index);""", _RUN_LINK, _FINISHED_ICON)


# --------------------------------------------------------------------------- run page


def open_run(driver, base_url: str, experiment_id: str, run_id: str, expect: tuple[str, ...] = ()) -> str:
    """Open a run's page (``#/experiments/ID/runs/RUN_ID``, Overview tab) and wait until it
    shows each of ``expect`` and has settled; its visible text (description, "Metrics (N)"
    and "Parameters (N)" tables, "About this run" with its "Child runs" links, then "Tags"
    as ``key\\n: value`` lines). Child-run links come from a second request, after the rest."""
    _go(driver, base_url, f"experiments/{experiment_id}/runs/{run_id}")
    wait_for(driver, lambda d: any(run_id in e.text for e in
                                   d.find_elements(By.CSS_SELECTOR, '[data-testid="key-value-Run ID"]')),
             f"run {run_id}'s overview")
    wait_for(driver, lambda d: d.find_elements(By.XPATH, "//h4[normalize-space()='Tags']"), "the Tags section")
    for text in expect:
        wait_for(driver, lambda d: text in page_text(d), f"{text!r} on run {run_id}'s page")
    return wait_stable(driver)


def shown_tags(driver) -> dict[str, str]:
    """The tags an open run page shows, ``{key: value}`` (from the chips' titles: full values
    even where the screen cuts them)."""
    return driver.execute_script("""
        const out = {};
        for (const chip of document.querySelectorAll('main [role="status"][data-component-type="tag"]')) {
            const spans = chip.querySelectorAll('span[title]');
            if (spans.length >= 2) out[spans[0].getAttribute('title')] = spans[1].getAttribute('title');
        }
        return out;""")


def shown_table(driver, title: str) -> dict[str, str]:
    """An open run page's "Metrics" or "Parameters" table, ``{name: value as shown}``."""
    return driver.execute_script("""
        const h = [...document.querySelectorAll('main h4')].find(e => e.textContent.trim().startsWith(arguments[0] + ' ('));
        if (!h) return null;
        const out = {};
        for (const row of h.parentElement.querySelectorAll('[role="row"]')) {
            const cells = row.querySelectorAll('[role="cell"]');
            if (cells.length >= 2) out[cells[0].textContent.trim()] = cells[1].textContent.trim();
        }
        return out;""", title) or {}


# --------------------------------------------------------------------------- metric charts


_CHART_JS = """
    const root = arguments[0];
    const traces = [...root.querySelectorAll('g.trace.scatter')].map(t => ({
        d: (t.querySelector('path.js-line') || {getAttribute: () => ''}).getAttribute('d') || '',
        points: t.querySelectorAll('g.points path.point').length,
        opacity: Number(getComputedStyle(t.querySelector('path.js-line') || t).strokeOpacity || 1)}));
    const texts = sel => [...root.querySelectorAll(sel)].map(e => e.textContent.trim());
    const box = root.getBoundingClientRect();
    const plot = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
    const data = ((plot && plot.data) || []).map(t => ({name: t.name, x: t.x, y: t.y}));
    return {traces, data, x_ticks: texts('g.xtick text'), y_ticks: texts('g.ytick text'), width: box.width,
            height: box.height};
"""


def _chart_summary(driver, root) -> dict | None:
    """What the Plotly chart under ``root`` draws, None while it has no line yet:
    ``{"points": markers drawn (MLflow draws one per logged step), "xy": the line's (x, y)
    pixel vertices (y downwards; Plotly merges vertices on a straight stretch, so fewer
    than the steps where values repeat), "x", "y", "name": the data of its first trace (as
    Plotly holds it: steps and values), "x_ticks", "y_ticks": axis labels, "width",
    "height"}``."""
    raw = driver.execute_script(_CHART_JS, root)
    drawn = [t for t in raw["traces"] if re.search(r"[0-9]", t["d"])]
    if not drawn or raw["width"] < 50 or raw["height"] < 50:
        return None
    best = max(drawn, key=lambda t: t["opacity"])
    xy = [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[0-9.e+-]+),(-?[0-9.e+-]+)", best["d"])]
    first = raw["data"][0] if raw["data"] else {}
    return {"xy": xy, "points": max(t["points"] for t in drawn), "x": first.get("x"), "y": first.get("y"),
            "name": first.get("name"), "x_ticks": raw["x_ticks"], "y_ticks": raw["y_ticks"], "width": raw["width"],
            "height": raw["height"]}


def open_metric_chart(driver, base_url: str, experiment_id: str, run_id: str, metric: str) -> dict:
    """Open the run's "Model metrics" tab, filter the charts to ``metric`` and wait for its
    chart card (title ``metric``) to draw a line; what it draws (``_chart_summary``)."""
    _go(driver, base_url, f"experiments/{experiment_id}/runs/{run_id}/model-metrics")
    search = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[placeholder="Search metric charts"]'),
                      "the metric charts' search box")[0]
    search.send_keys(metric, Keys.ENTER)
    title = f'[data-testid="experiment-view-compare-runs-card"] h4[title={json.dumps(metric)}]'

    def drawn(d):
        for h in d.find_elements(By.CSS_SELECTOR, title):
            card = h.find_element(By.XPATH, './ancestor::*[@data-testid="experiment-view-compare-runs-card"]')
            d.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
            summary = _chart_summary(d, card)
            if summary:
                return summary
        return None
    return wait_for(driver, drawn, f"the chart of metric {metric!r}")


def open_metric_page(driver, base_url: str, experiment_id: str, run_ids: list[str], metric: str) -> dict:
    """Open the metric page of ``metric`` for ``run_ids`` (``#/metric?runs=[...]&metric=...``,
    points shown) and wait for its chart; the chart summary plus ``"table"``: the rows of
    its Metric / Latest / Min / Max table as lists of cell texts."""
    q = {"runs": json.dumps(list(run_ids)), "metric": json.dumps(metric), "experiments": json.dumps([experiment_id]),
         "plot_metric_keys": json.dumps([metric]), "plot_layout": "{}", "x_axis": "step", "y_axis_scale": "linear",
         "line_smoothness": "1", "show_point": "true", "deselected_curves": "[]", "last_linear_y_axis_range": "[]"}
    _go(driver, base_url, "metric?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote))
    summary = wait_for(driver, lambda d: next(filter(None, (_chart_summary(d, p) for p in
                                                            d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))), None),
                       f"the metric page's chart of {metric!r}")
    summary["table"] = driver.execute_script("""
        return [...document.querySelectorAll('main table tbody tr')].map(
            r => [...r.querySelectorAll('td')].map(c => c.textContent.trim())).filter(r => r.some(c => c));""")
    return summary


# --------------------------------------------------------------------------- artifacts


class NotPreviewed(AssertionError):
    """The Artifacts tab shows the file but no preview of it."""


def open_artifact(driver, base_url: str, experiment_id: str, run_id: str, path: str) -> str:
    """Open the run's Artifacts tab, click down the tree to ``path`` (``dir/file``) and
    return the previewed text (``NotPreviewed`` where the UI offers no preview)."""
    _go(driver, base_url, f"experiments/{experiment_id}/runs/{run_id}/artifacts")
    node = '[data-testid="artifact-tree-node"][artifact-name={}]'
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts):
        el = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, node.format(json.dumps(part))),
                      f"artifact {'/'.join(parts[:i + 1])!r} in the tree")[0]
        click(driver, el)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'[title$={json.dumps("/" + "/".join(parts))}]'),
             f"artifact {path!r} selected")

    def preview(d):
        if "Select a file to preview" in page_text(d):
            return ("none", None)
        shown = d.find_elements(By.CSS_SELECTOR, ".mlflow-ShowArtifactPage")
        text = shown[0].get_attribute("textContent") if shown else ""
        return ("text", text) if text.strip() else None
    kind, text = wait_for(driver, preview, f"the preview of {path!r}")
    if kind == "none":
        raise NotPreviewed(f"MLflow UI shows no preview of artifact {path!r} of run {run_id} (its extension is not "
                           f"one the UI previews)")
    return text
