"""Python twins of the standard Gadgetron gadgets our chains use, for offline replay.

Each twin is built from the ISMRMRD header and the gadget's ``<property>``
values and has ``process(items) -> iterator``. :data:`TWINS` maps Gadgetron's
class names (``<classname>`` in a chain) to the twin.
"""

from gadgets.standard.accumulate_trigger import AcquisitionAccumulateTrigger
from gadgets.standard.asymmetric_echo import AsymmetricEchoAdjustRO
from gadgets.standard.bucket_to_buffer import BucketToBuffer
from gadgets.standard.noise_adjust import NoiseAdjust
from gadgets.standard.remove_oversampling import RemoveROOversampling

TWINS = {cls.name: cls for cls in (NoiseAdjust, AsymmetricEchoAdjustRO, RemoveROOversampling,
                                   AcquisitionAccumulateTrigger, BucketToBuffer)}

#: The library each twin's original lives in (``<dll>`` in a Gadgetron 4 chain).
GADGETRON_DLL = "gadgetron_mricore"

__all__ = ["TWINS", "GADGETRON_DLL", "NoiseAdjust", "AsymmetricEchoAdjustRO", "RemoveROOversampling", "AcquisitionAccumulateTrigger",
           "BucketToBuffer"]
