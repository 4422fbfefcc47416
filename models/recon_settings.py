"""What a reconstruction is run with: :class:`ReconSettings`, the one settings schema.

Every field is declared with :func:`models.settings_schema.setting` (type, default,
allowed values, doc). The API validates it, the chains' ``gadgets.dps_recon``
properties are parsed from it (the fields marked ``chain``), and ``--help`` and
``docs/cli-help.txt`` print it. Torch-free, so a chain is checked before any model loads.
"""

import logging
from dataclasses import dataclass, replace
from typing import Optional

from models.errors import ReconInputError
from models.sampler.zeta import DEFAULT_STEPS, TABLE_STEPS, default_zeta
from models.settings_schema import setting, validate
from models.tilings import PATCH_TILINGS

log = logging.getLogger(__name__)

METHODS = ("dps", "cg_sense", "cs", "zero_filled")
SAMPLERS = ("dps", "dds")

_warned_step_counts = set()  # step counts already warned about (once per process, not per slice)


@dataclass(frozen=True)
class ReconSettings:
    """What to reconstruct with; every field has a default, and a wrong value raises
    :class:`models.errors.SettingsError` naming the field."""

    method: str = setting("dps", "dps: the diffusion prior; cg_sense, cs (L1 wavelet), zero_filled: classical",
                          choices=METHODS)
    contrast: str = setting("FLAIR", "the prior's contrast slot (one of its vocabulary)")
    acceleration: Optional[float] = setting(None, "acceleration R that chooses zeta; header: the scan header's",
                                            kind=float, minimum=1.0, word="header")
    zeta: Optional[float] = setting(None, "data-consistency weight; auto: the sampler's per-R table "
                                    "(models/sampler/zeta.py)", kind=float, minimum=0.0, word="auto")
    sampler: str = setting("dds", "dds: noise-weighted CG data consistency on each denoised estimate "
                           "(models/sampler/dds.py); dps: the paper's gradient step (models/sampler/dps.py)",
                           choices=SAMPLERS)
    num_steps: int = setting(DEFAULT_STEPS, "noise levels of the probability-flow ODE", minimum=1)
    num_samples: int = setting(1, "posterior draws; > 1: their mean, and a std series", minimum=1)
    seed: int = setting(0, "draw k starts from noise seeded seed + k", minimum=0)
    dds_cg_iterations: int = setting(10, "CG iterations of each DDS data-consistency step", minimum=1)
    dds_eta: float = setting(1.0, "DDS stochasticity (DDIM eta, 0 to 1): how much of each step's noise is drawn "
                             "fresh; 0: the deterministic ODE, 1: ancestral steps", kind=float, minimum=0.0,
                             maximum=1.0)
    dds_churn: float = setting(0.0, "DDS: EDM's S_churn, fresh noise that raises each step's noise level first "
                               "(0: off)", kind=float, minimum=0.0)
    dds_noise_floor: float = setting(0.0, "DDS: variance added to the scan's k-space noise in the data weight, in "
                                     "the prior's units (model error, e.g. of the coil maps; 0: off)", kind=float,
                                     minimum=0.0)
    sigma_start: Optional[float] = setting(None, "DDS warm start from the CG-SENSE image at this noise level; "
                                           "none: from pure noise", kind=float, positive=True, word="none")
    patch_tiling: str = setting("shifted", "a patch prior on a whole image: shifted (tiles of its largest patch "
                                "at a fresh random offset every step) or whole (the network once on the whole "
                                "image: about half the time)", choices=PATCH_TILINGS)
    final_cg_iterations: int = setting(0, "CG-SENSE iterations warm-started from the prior's image (0: off)",
                                       minimum=0)
    cg_iterations: int = setting(20, "CG-SENSE iterations at most", minimum=1)
    cs_lambda: float = setting(0.005, "L1-wavelet weight of method cs, relative to the image scale", minimum=0.0)
    cs_iterations: int = setting(100, "FISTA iterations of method cs", minimum=1)
    # set by the API's callers, not by chains
    sigma_max: Optional[float] = setting(None, "the first noise level; prior: the prior's own (EDM's 80)",
                                         kind=float, positive=True, word="prior", chain=False)
    rho: float = setting(7.0, "EDM's noise-level spacing exponent", positive=True, chain=False)
    dc_form: str = setting("dps", "paper's DPS step: after each ODE step (dps) or inside the ODE (ode)",
                           choices=("dps", "ode"), chain=False)
    residual_normalised: bool = setting(False, "paper's DPS step on ||r|| instead of ||r||^2", chain=False)
    max_batch: int = setting(8, "slices x draws through the network at once", minimum=1, chain=False)
    cuda_bf16: bool = setting(False, "bf16 autocast of the network on CUDA "
                              "(slower for the shipped network: benchmarks/results/gpu_dps_check.md)", chain=False)
    mask_to_coil_support: bool = setting(True, "zero the prior's image where no coil map reaches", chain=False)
    size_multiple: int = setting(1, "the network's grid multiple (set from the prior)", minimum=1, chain=False)
    noise_variance: Optional[float] = setting(
        None, "k-space noise variance E|n|^2 per sample (models/mri/noise.py): weighs the DDS data term and "
        "Tikhonov-regularises CG-SENSE; none: estimated (DDS) or plain early-stopped CG", kind=float,
        positive=True, word="none", chain=False)

    def __post_init__(self):
        validate(self)

    def resolved_zeta(self) -> float:
        """``zeta``, or the sampler's table value at ``acceleration``."""
        if self.zeta is not None:
            return float(self.zeta)
        if self.acceleration is None:
            raise ReconInputError("DPS needs either zeta or the acceleration factor to choose zeta")
        if (self.method, self.sampler) == ("dps", "dps") and self.num_steps != TABLE_STEPS \
                and self.num_steps not in _warned_step_counts:
            _warned_step_counts.add(self.num_steps)
            log.warning("the zeta table is tuned for %d DPS steps; at %d steps the data term pulls %s: "
                        "set zeta for this step count (benchmarks/tune_zeta.py)", TABLE_STEPS, self.num_steps,
                        "less" if self.num_steps < TABLE_STEPS else "more")
        return default_zeta(self.acceleration, sampler=self.sampler)

    def with_zeta_resolved(self) -> "ReconSettings":
        """The same settings with ``zeta`` a number (for ``dps``; other methods do not use it)."""
        return self if self.method != "dps" else replace(self, zeta=self.resolved_zeta())

    def with_changes(self, **changes) -> "ReconSettings":
        return replace(self, **changes)
