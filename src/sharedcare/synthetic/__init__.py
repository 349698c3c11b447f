"""Synthetic Dorset: a deterministic synthetic ICS population and its organisation feeds.

Public surface::

    from sharedcare.synthetic import DataQuality, SynthConfig, run

    run(SynthConfig(people=20_000, seed=1, out=Path("synthetic-dorset")))

See docs/explanation/synthetic-dorset.md for the model, the output layout and its limits.
"""

from sharedcare.synthetic.generate import SynthConfig, run
from sharedcare.synthetic.quality import CLEAN, DataQuality

__all__ = ["CLEAN", "DataQuality", "SynthConfig", "run"]
