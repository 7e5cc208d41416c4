"""Running a study: the loop, its session (a trial's life-cycle against the ledger, MLflow tracking, their small types, the run directory), runner, checkpoint, heartbeat, pipeline."""
