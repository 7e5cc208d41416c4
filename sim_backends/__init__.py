"""What to simulate and where it runs.

``sim_backends.lammps`` writes LAMMPS inputs and reads LAMMPS outputs (it runs nothing);
``sim_backends.backend`` defines the job interface and ``sim_backends.local`` runs jobs as
local subprocesses. Nothing here knows about optimisation or experimental data.
"""
