"""Python twin of Gadgetron's ``AsymmetricEchoAdjustROGadget`` (partial echo -> full readout).

A readout whose echo is not centred (``2 * center_sample != number_of_samples``)
and that is shorter than the encoded matrix x is zero-padded to that length: on
the left when the echo comes early (samples after the echo were acquired), on
the right otherwise. As in Gadgetron's current gadget, the padded samples are
recorded in ``discard_pre`` / ``discard_post`` and ``center_sample`` becomes the
middle of the new readout, so BucketToBuffer places the line in place and the
sampling mask (:func:`gadgets.buffers.readout_placement`) leaves the zeros out.
Noise acquisitions pass unchanged. Place it before RemoveROOversampling.
"""

import ismrmrd
import numpy as np

from gadgets.errors import HeaderError


class AsymmetricEchoAdjustRO:
    name = "AsymmetricEchoAdjustROGadget"
    PROPERTIES = ()

    def __init__(self, header, props=None):
        if not header.encoding:
            raise HeaderError("AsymmetricEchoAdjustRO: the ISMRMRD header has no <encoding> section")
        self.readout = [int(e.encodedSpace.matrixSize.x) for e in header.encoding]

    def adjust(self, acq: ismrmrd.Acquisition) -> ismrmrd.Acquisition:
        espace = int(acq.encoding_space_ref)
        if espace >= len(self.readout):
            raise HeaderError(f"acquisition refers to encoding space {espace} but the header has {len(self.readout)}")
        full, samples, centre = self.readout[espace], int(acq.number_of_samples), int(acq.center_sample)
        if 2 * centre == samples or samples >= full:
            return acq
        data = np.asarray(acq.data)
        padded = np.zeros((data.shape[0], full), dtype=np.complex64)
        head = acq.getHead()
        if 2 * centre < samples:  # early echo: the missing samples are at the start
            padded[:, full - samples:] = data
            head.discard_pre, head.discard_post = full - samples, 0
        else:
            padded[:, :samples] = data
            head.discard_pre, head.discard_post = 0, full - samples
        head.number_of_samples = full
        head.center_sample = full // 2
        return ismrmrd.Acquisition(head, padded)

    def process(self, items):
        for item in items:
            if isinstance(item, ismrmrd.Acquisition) and not item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                yield self.adjust(item)
            else:
                yield item
