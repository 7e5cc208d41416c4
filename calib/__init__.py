"""calib: Bayesian force-field calibration of CGMD electrode-manufacturing models.

Study spec, parameter space, the optimisation loop over an Optuna ledger with BoTorch
proposals, MLflow tracking, Table S1 export and the ``calib`` command line.
"""

__version__ = "0.1.0"
