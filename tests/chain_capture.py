"""What the DPS gadget hands to the reconstruction, recorded during a replay (tests and benchmarks)."""

import torch


class ReconCapture:
    """Context manager: while active, every ``models.reconstruction.reconstruct`` call is recorded.

    ``calls`` holds ``(kspace, maps, mask, settings)`` per call, in order (one per
    slice on the CPU), then the call proceeds unchanged.
    """

    def __init__(self):
        self.calls = []
        self._original = None

    def __enter__(self):
        import models.reconstruction as recon

        self._original = original = recon.reconstruct

        def spy(kspace, maps, mask, settings, prior=None, progress=None):
            self.calls.append((kspace.clone(), maps.clone(), torch.as_tensor(mask).clone(), settings))
            return original(kspace, maps, mask, settings, prior=prior, progress=progress)

        recon.reconstruct = spy
        return self

    def __exit__(self, *exc):
        import models.reconstruction as recon

        recon.reconstruct = self._original
        return False
