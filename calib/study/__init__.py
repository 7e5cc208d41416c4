"""A study loaded: its file and dataset, parameter space, identity, upstream state, ledger copy."""
