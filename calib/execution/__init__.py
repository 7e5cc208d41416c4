"""Running a study: the loop, its session with the ledger, runner, checkpoint, heartbeat, pipeline."""
