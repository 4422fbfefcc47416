"""Gadgetron-facing side of dps-gadgetron: gadgets, chain runner and the CLI.

Holds no numerics: everything numerical is a call into :mod:`models`.
"""

import warnings

# gadgetron-python 1.4 reads Gadgetron's messages through ctypes structures whose PEP 3118 buffer format
# numpy cannot match exactly; numpy warns for every ReconData and then reads it right (under a real
# Gadgetron the images equal the replay's: tests/test_real_gadgetron.py). Keeps Gadgetron's log readable.
warnings.filterwarnings("ignore", message="A builtin ctypes object gave a PEP3118 format string",
                        category=RuntimeWarning, module=r"gadgetron\.external")
