"""Reconstruction library of dps-gadgetron: MRI physics, the EDM prior, the DPS
sampler, data and training. Never imports Gadgetron (see ``gadgets`` for that)."""

__version__ = "0.1.0"
