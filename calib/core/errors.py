"""Error kinds of the product.

``InputError``: bad input found before anything is written (exit status 2, one line naming
file and field). Simulation failures are not exceptions of the loop: they become FAIL
trials (see ``sim_backends.lammps.outputs.SimulationFailed``).
"""

from __future__ import annotations


class InputError(ValueError):
    """Invalid user input: ``where`` names the file (or option) and ``field`` the field."""

    def __init__(self, where: str, field: str, message: str) -> None:
        super().__init__(f"{where}: {field}: {message}")
        self.where = where
        self.field = field
        self.message = message


class StudyHalted(RuntimeError):
    """The study stopped itself (exit status 1): the same error kept trials from starting
    (``stop_after_start_failures``), so more trials would only spend the budget on it."""


class Terminated(KeyboardInterrupt):
    """The driver received SIGTERM (a scheduler's or ``kill``'s stop): handled like Ctrl-C,
    exit status 143."""
