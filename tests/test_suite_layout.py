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


def test_a_spread_module_gives_each_test_its_own_group(request):
    """conftest's grouping hook: a module with ``SPREAD_OVER_WORKERS`` (``test_faults``) gives
    each test its own xdist group, any other module one group (the hook run on stand-ins
    carrying a node id and the real module)."""
    from conftest import pytest_collection_modifyitems

    import test_faults

    items = [FakeItem(f"tests/test_faults.py::t[{i}]", test_faults) for i in range(2)]
    items.append(FakeItem("tests/test_suite_layout.py::t", __import__(__name__)))
    pytest_collection_modifyitems(request.config, items)
    assert [i.group for i in items] == ["tests/test_faults.py::t[0]", "tests/test_faults.py::t[1]",
                                        "tests/test_suite_layout.py"]


class FakeItem:
    """The two attributes of a pytest item the grouping hook reads, and the marker it adds."""

    def __init__(self, nodeid: str, module) -> None:
        self.nodeid, self.module, self.group = nodeid, module, None

    def get_closest_marker(self, name):
        return None

    def add_marker(self, mark) -> None:
        self.group = mark.args[0]
