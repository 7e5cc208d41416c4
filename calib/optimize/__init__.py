"""Proposing trials: the samplers, the composite GP model, surrogate, posterior, manual sets, confirmation."""
