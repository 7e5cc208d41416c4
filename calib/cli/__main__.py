"""``python -m calib.cli``: the ``calib`` command line (``calib.cli.main``)."""

from calib.cli import main

main()
