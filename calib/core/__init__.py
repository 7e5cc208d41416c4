"""Shared by every layer: errors, writable folders, the backend registry, plotting."""
