"""The study file's schema: pydantic models of a study and its fidelities."""
