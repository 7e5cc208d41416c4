"""LAMMPS log / ave-time parsing (sim_backends/lammps/outputs.py) on small inline logs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_backends.lammps.outputs import (
    block_stats,
    failure_reason,
    lammps_version,
    read_ave_time,
    run_stats,
    thermo_rows,
)

CLEAN_LOG = """\
LAMMPS (22 Jul 2025 - Update 4)
OMP_NUM_THREADS environment is not set. Defaulting to 1 thread.
  using 1 OpenMP thread(s) per MPI task
units micro
atom_style sphere
Created 200 atoms
WARNING: Using 'neigh_modify every 1 delay 0 check yes' setting during minimization (src/min.cpp:219)
Per MPI rank memory allocation (min/avg/max) = 5.2 | 5.2 | 5.2 Mbytes
   Step          Temp          E_pair         Press          Volume
         0   300            0.5           101.3          5.1e+08
       500   299.5          0.4           101.0          5.0e+08
WARNING: Pair style granular computes a velocity-dependent force (src/pair.cpp:123)
      1000   300.2          0.3           100.9          4.9e+08
Loop time of 0.5 on 1 procs for 1000 steps with 200 atoms

Performance: 172800.000 tau/day, 2000.000 timesteps/s, 400.000 katom-step/s
99.8% CPU use with 1 MPI tasks x 1 OpenMP threads

Per MPI rank memory allocation (min/avg/max) = 5.2 | 5.2 | 5.2 Mbytes
   Step          Temp          E_pair         Press          Volume         Density
      1000   300.2          0.3           100.9          4.9e+08        1.8
      2000   300.1          0.2           101.2          4.8e+08        1.85
      3000   299.9          0.1           101.4          4.7e+08        1.86
Loop time of 1.25 on 1 procs for 2000 steps with 199 atoms

Total wall time: 0:00:01
"""


def test_lammps_version():
    assert lammps_version(CLEAN_LOG) == "22 Jul 2025 - Update 4"
    assert lammps_version("LAMMPS (2 Aug 2023)\nunits micro\n") == "2 Aug 2023"
    assert lammps_version("no version here\n") is None


def test_thermo_rows_across_runs_skip_warnings():
    rows = thermo_rows(CLEAN_LOG)
    assert [r["Step"] for r in rows] == ["0", "500", "1000", "1000", "2000", "3000"]
    assert rows[0] == {"Step": "0", "Temp": "300", "E_pair": "0.5", "Press": "101.3", "Volume": "5.1e+08"}
    assert rows[2]["Temp"] == "300.2"  # the row right after the WARNING line
    assert "Density" not in rows[2]
    assert rows[-1]["Density"] == "1.86"
    assert rows[4]["Press"] == "101.2"


def test_thermo_rows_empty_log():
    assert thermo_rows("") == []
    assert thermo_rows("LAMMPS (22 Jul 2025 - Update 4)\nunits micro\n") == []


def test_run_stats_sums_over_runs():
    s = run_stats(CLEAN_LOG)
    assert s.atom_steps == 1000 * 200 + 2000 * 199  # 598000
    assert s.loop_time_s == pytest.approx(0.5 + 1.25)
    assert s.atom_steps_per_s == pytest.approx(598000 / 1.75)


def test_run_stats_no_runs():
    s = run_stats("LAMMPS (22 Jul 2025 - Update 4)\n")
    assert s.atom_steps == 0
    assert s.loop_time_s == 0.0
    assert math.isnan(s.atom_steps_per_s)


def test_failure_reason_clean_log_is_none():
    assert failure_reason(CLEAN_LOG) is None


def test_failure_reason_lost_atoms():
    log = CLEAN_LOG.split("Loop time of 1.25")[0] + (
        "ERROR: Lost atoms: original 200 current 199 (src/thermo.cpp:494)\n"
        "Last command: run 2000\n"
    )
    reason = failure_reason(log)
    assert reason == "ERROR: Lost atoms: original 200 current 199 (src/thermo.cpp:494)"


def test_failure_reason_error_on_proc():
    log = CLEAN_LOG + "ERROR on proc 0: Out of range atoms - cannot compute PPPM (src/KSPACE/pppm.cpp:1933)\n"
    reason = failure_reason(log)
    assert reason == "ERROR on proc 0: Out of range atoms - cannot compute PPPM (src/KSPACE/pppm.cpp:1933)"


def test_error_inside_a_line_does_not_count():
    # only lines that start with ERROR are LAMMPS errors
    log = CLEAN_LOG + "print 'no ERROR: here'\n"
    assert failure_reason(log) is None


@pytest.mark.parametrize("bad", ["nan", "-nan", "NaN", "inf"])
def test_failure_reason_non_finite_thermo(bad):
    log = CLEAN_LOG.replace(
        "      2000   300.1          0.2           101.2",
        f"      2000   300.1          0.2           {bad}",
    )
    assert log != CLEAN_LOG
    reason = failure_reason(log)
    assert reason is not None
    assert "Press" in reason
    assert "2000" in reason
    assert "Temp" not in reason


def test_block_stats_constant_series():
    steps = np.arange(1000, 11000, 1000, dtype=float)
    values = np.full(10, 1.9)
    s = block_stats(steps, values)
    assert s.n_blocks == 10
    assert s.mean == pytest.approx(1.9)
    assert s.sem == pytest.approx(0.0, abs=1e-15)
    assert s.drift_rel == pytest.approx(0.0, abs=1e-12)


def test_block_stats_linear_ramp_drift():
    steps = np.linspace(0, 50_000, 11)
    values = np.linspace(1.0, 1.1, 11)
    s = block_stats(steps, values)
    mean = 1.05  # (1.0 + 1.1) / 2 for an evenly sampled ramp
    assert s.mean == pytest.approx(mean, rel=1e-12)
    assert s.drift_rel == pytest.approx(0.1 / mean, abs=1e-9)


def test_block_stats_sem_is_sample_std_over_sqrt_n():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    steps = np.array([1.0, 2.0, 3.0, 4.0])
    s = block_stats(steps, values)
    # mean 2.5; sum of squared deviations 2.25+0.25+0.25+2.25 = 5; var(ddof=1) = 5/3
    assert s.mean == pytest.approx(2.5)
    assert s.sem == pytest.approx(math.sqrt(5.0 / 3.0) / 2.0, rel=1e-12)
    assert s.n_blocks == 4


def test_block_stats_empty():
    s = block_stats(np.zeros(0), np.zeros(0))
    assert s.n_blocks == 0
    assert math.isnan(s.mean) and math.isnan(s.sem) and math.isnan(s.drift_rel)


def test_read_ave_time(tmp_path):
    p = tmp_path / "rho.dat"
    p.write_text("# Time-averaged data for fix x\n# TimeStep v_rho\n100 1.5\n200 1.6\n")
    steps, values = read_ave_time(p)
    assert steps.tolist() == [100.0, 200.0]
    assert values.tolist() == pytest.approx([1.5, 1.6])


def test_read_ave_time_single_row_and_header_only(tmp_path):
    p = tmp_path / "one.dat"
    p.write_text("# Time-averaged data for fix x\n# TimeStep v_rho\n100 1.5\n")
    steps, values = read_ave_time(p)
    assert steps.tolist() == [100.0] and values.tolist() == [1.5]
    q = tmp_path / "none.dat"
    q.write_text("# Time-averaged data for fix x\n# TimeStep v_rho\n")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns on an empty file
        steps, values = read_ave_time(q)
    assert len(steps) == 0 and len(values) == 0


def test_crash_reason_names_signal_and_last_line():
    from sim_backends.lammps.outputs import crash_reason

    log = "LAMMPS (22 Jul 2025 - Update 4)\nrun 20000\n   Step   Temp\n         0   300\n"
    assert crash_reason(-11, log) == "LAMMPS killed by signal SIGSEGV; last log line: 0   300"
    assert crash_reason(3, "") == "LAMMPS exited with status 3"
