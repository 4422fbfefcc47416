"""MRI physics: centred FFTs, masks, the SENSE operator, coil maps, prewhitening,
classical reconstructions and metrics. Native complex64 tensors, k-space
``[B, C, H, W]`` with H = readout and W = phase encode (fastMRI layout)."""
