"""How good is it: experimental datasets, errors of simulated observables, scalarisation.

No LAMMPS and no I/O beyond loading datasets.
"""
