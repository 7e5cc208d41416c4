"""MkDocs hooks (``hooks:`` in mkdocs.yml), run at every build of the site.

- ``on_config``: put this folder and the calib checkout on ``sys.path`` (MkDocs restores
  ``sys.path`` after loading a hook, so it is done here): mkdocs-click imports the CLI
  through ``cli_click`` (``docs/reference/cli.md``), and the reference generator imports
  the settings models.
- ``on_files``: add the generated study-file reference page (``gen_reference.PAGE``), built
  from the pydantic models by ``gen_reference.render``; it exists only in the built site.
- ``on_page_content``: on the CLI page, mkdocs-click's "_required" default cell becomes
  *required*.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def _importable() -> None:
    if str(DOCS) not in sys.path:
        sys.path.insert(0, str(DOCS))
    import gen_reference

    gen_reference.ensure_importable(DOCS)


def on_config(config):
    _importable()
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    _importable()
    import gen_reference

    files.append(File.generated(config, gen_reference.PAGE, content=gen_reference.render()))
    return files


def on_page_content(html, page, config, files):
    if page.file.src_uri == "reference/cli.md":
        html = html.replace("<td>_required</td>", "<td><em>required</em></td>")
    return html
