"""What users look at: MLflow tracking, the --json summary, the calib report page and its figures."""
