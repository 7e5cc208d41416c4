"""The suite's own layout under pytest-xdist (the README's ``-n 2 --dist loadgroup``): every
test carries its xdist group in its node id, so a module's tests, and with them its
module-scoped fixtures (smoke studies of a minute or more), run on one worker, once.

pytest 9.2 computes node ids without the ``@group`` suffix pytest-xdist 3.8 appends, which
silently spread every module over both workers and made each module fixture twice (the
suite took 25 minutes instead of about 15); the test extra pins ``pytest<9`` and this test
fails if the groups stop holding."""

from __future__ import annotations

import os


def test_the_xdist_group_is_in_the_node_id(request):
    groups = [m.args[0] for m in request.node.iter_markers("xdist_group")]
    assert groups == ["tests/test_suite_layout.py"]  # conftest: one group per module
    if os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup"):
        assert request.node.nodeid.endswith("@tests/test_suite_layout.py"), request.node.nodeid
