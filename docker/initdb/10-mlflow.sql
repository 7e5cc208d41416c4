-- MLflow's backend store lives next to the Optuna ledger on the same server.
CREATE DATABASE mlflow OWNER calib;
