"""The noise level of measured k-space, for reconstructions that weigh data by it.

After Gadgetron's NoiseAdjust (and its twin in :mod:`gadgets.standard`) the coil
noise is white, with a per-sample variance fixed by Gadgetron's whitener scale
``sqrt(2 * dwell / noise_dwell * bandwidth)``: with noise whose power grows with
the receiver bandwidth, ``E|n|^2 = 2 * bandwidth`` per complex sample
(``relativeReceiverNoiseBandwidth``, 0.793 by default), whatever the coils and
the scanner's units (:func:`prewhitened_variance`). Readout oversampling removal by
orthonormal FFTs keeps it.

Without a noise scan the data are not whitened and their noise is in the
scanner's units; :func:`kspace_noise_variance` then estimates it from the outer
readout band of the measured lines. That band still holds some signal, so the
estimate errs high (measured on the independent corpus at SNR 10 / 30 / 100:
1.1x / 2.1x / 5.5x the true value), which regularises more, never less.
:func:`resolve_noise_variance` takes the prewhitened value unless the data say
otherwise (their estimate is below half of it, or above 20x it), and reports
which it took.
"""

import logging
import math
from typing import NamedTuple

import torch

log = logging.getLogger(__name__)

#: fraction of the readout at each end of k-space used by :func:`kspace_noise_variance`
EDGE_FRACTION = 0.1
#: the prewhitened value holds while the data's edge estimate lies in this range of it
CONSISTENT_RANGE = (0.5, 20.0)


class NoiseLevel(NamedTuple):
    variance: float  # E|n|^2 per complex k-space sample
    source: str  # "prewhitened" | "estimated" | "given"


def prewhitened_variance(receiver_bandwidth: float) -> float:
    """``E|n|^2`` per sample of k-space prewhitened as Gadgetron's NoiseAdjust does."""
    return 2.0 * float(receiver_bandwidth)


def kspace_noise_variance(kspace: torch.Tensor, mask: torch.Tensor) -> float:
    """Robust ``E|n|^2`` from the outer readout band of the measured samples of ``kspace [..., C, H, W]``.

    ``median(|y|^2) / ln 2`` (the median of an exponential variable of mean
    ``E|n|^2``) over the first and last ``EDGE_FRACTION`` of the readout.
    """
    height = kspace.shape[-2]
    band = torch.zeros(height, dtype=torch.bool, device=kspace.device)
    edge = max(1, int(round(EDGE_FRACTION * height)))
    band[:edge] = True
    band[-edge:] = True
    measured = torch.broadcast_to(torch.as_tensor(mask, device=kspace.device) > 0, kspace.shape) & band[:, None]
    samples = kspace[measured]
    if samples.numel() == 0:
        raise ValueError("kspace_noise_variance: no measured sample in the outer readout band")
    return float(samples.abs().pow(2).median()) / math.log(2.0)


def resolve_noise_variance(kspace: torch.Tensor, mask: torch.Tensor, receiver_bandwidth: float) -> NoiseLevel:
    """The noise level of one slice: the prewhitened value, or the data's estimate where they disagree."""
    expected = prewhitened_variance(receiver_bandwidth)
    estimate = kspace_noise_variance(kspace, mask)
    low, high = CONSISTENT_RANGE
    if low * expected <= estimate <= high * expected:
        return NoiseLevel(expected, "prewhitened")
    log.warning("k-space noise looks not prewhitened (edge estimate %.3g, prewhitened data would give %.3g; no "
                "noise scan?): using the estimate", estimate, expected)
    return NoiseLevel(estimate, "estimated")
