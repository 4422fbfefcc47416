"""How a patch prior covers a whole image (the names only: torch-free, so that
:class:`models.recon_settings.ReconSettings` can check a chain's ``patch_tiling`` before any model loads).

- ``shifted``: tiles of the largest training patch at a fresh random offset at every step (no seam stays
  in one place);
- ``whole``: the fully convolutional network once on the whole image with its position channels.

The tiling itself is :class:`models.prior.patches.AssembledDenoiser`.
"""

PATCH_TILINGS = ("shifted", "whole")
