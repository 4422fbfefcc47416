"""Gadgetron-facing side of dps-gadgetron: gadgets, chain runner and the CLI.

Holds no numerics: everything numerical is a call into :mod:`models`.
"""
