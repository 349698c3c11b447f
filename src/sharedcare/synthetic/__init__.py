"""Synthetic Dorset: a deterministic synthetic ICS population and its organisation feeds."""
