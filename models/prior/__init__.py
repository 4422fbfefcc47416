"""The prior: a contrast-conditioned EDM score model (Karras et al. 2022).

Modules: :mod:`channels` (complex <-> 2 real channels), :mod:`unet` (backbone),
:mod:`precond` (EDM preconditioning, the denoiser ``D_x``), :mod:`loss`
(``EDMLoss``), :mod:`augment` (non-leaking augmentation), :mod:`ema`,
:mod:`contrasts` (vocabulary, adding a slot), :mod:`normalization` (intensity
rule) and :mod:`checkpoint` (safetensors + JSON metadata). No Gadgetron here.
"""

from models.prior.augment import AUGMENT_DIM, AugmentPipe
from models.prior.channels import channels_to_complex, complex_to_channels
from models.prior.checkpoint import PriorMetadata, load_prior, read_metadata, save_prior
from models.prior.contrasts import ContrastVocabulary, add_contrast_slot
from models.prior.ema import EMA
from models.prior.loss import EDMLoss
from models.prior.normalization import IntensityNormalization, estimate_sigma_data, scale_from_image
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, UNetConfig, count_parameters, unet_preset

__all__ = [
    "AUGMENT_DIM", "AugmentPipe", "ContrastVocabulary", "EDMLoss", "EDMPrecond", "EMA",
    "IntensityNormalization", "PriorMetadata", "UNet", "UNetConfig", "add_contrast_slot",
    "channels_to_complex", "complex_to_channels", "count_parameters", "estimate_sigma_data",
    "load_prior", "read_metadata", "save_prior", "scale_from_image", "unet_preset",
]
