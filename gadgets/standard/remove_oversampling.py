"""Python twin of Gadgetron's ``RemoveROOversamplingGadget``.

When the header's encoded and recon readout differ (matrix or field of view),
each acquisition is transformed to image space along the readout, the central
``samples * reconFOV / encodedFOV`` samples are kept, and it is transformed
back; ``number_of_samples``, ``center_sample``, ``discard_pre/post`` shrink by
the same ratio. Numerics: :func:`models.data.ismrmrd_io.remove_readout_oversampling`
(centred orthonormal FFT along the readout), the same function the file reader uses.
"""

import ismrmrd
import numpy as np

from gadgets.errors import HeaderError
from models.data.ismrmrd_io import remove_readout_oversampling


class RemoveROOversampling:
    name = "RemoveROOversamplingGadget"
    PROPERTIES = ()

    def __init__(self, header, props=None):
        if not header.encoding:
            raise HeaderError("RemoveROOversampling: the ISMRMRD header has no <encoding> section")
        enc = header.encoding[0]
        self.ratio = enc.encodedSpace.fieldOfView_mm.x / enc.reconSpace.fieldOfView_mm.x
        self.active = (enc.encodedSpace.matrixSize.x != enc.reconSpace.matrixSize.x
                       or enc.encodedSpace.fieldOfView_mm.x != enc.reconSpace.fieldOfView_mm.x)

    def crop(self, acq: ismrmrd.Acquisition) -> ismrmrd.Acquisition:
        data = np.asarray(acq.data)
        samples = data.shape[1]
        keep = int(samples / self.ratio)
        head = acq.getHead()
        head.number_of_samples = keep
        head.center_sample = int(head.center_sample / self.ratio)
        head.discard_pre = int(head.discard_pre / self.ratio)
        head.discard_post = int(head.discard_post / self.ratio)
        return ismrmrd.Acquisition(head, remove_readout_oversampling(data, keep, axis=-1))

    def process(self, items):
        for item in items:
            if (self.active and isinstance(item, ismrmrd.Acquisition)
                    and not item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)):
                yield self.crop(item)
            else:
                yield item
