"""U-Net backbone: shapes, presets, contrast conditioning, shape errors."""

import pytest
import torch

from models.errors import ReconInputError, ShapeError
from models.prior.unet import UNet, UNetConfig, count_parameters, unet_preset


def _tiny(label_dim=3, augment_dim=0, res=16):
    torch.manual_seed(0)
    return UNet(unet_preset("tiny", res, label_dim=label_dim, augment_dim=augment_dim)).eval()


def test_output_shape_and_nonsquare_input():
    net = _tiny()
    labels = torch.eye(3)[:2]
    for shape in [(2, 2, 16, 16), (2, 2, 16, 24)]:
        y = net(torch.randn(shape), torch.zeros(2), labels)
        assert y.shape == shape
        assert torch.isfinite(y).all()


def test_preset_parameter_counts():
    tiny = count_parameters(UNet(unet_preset("tiny", 16, label_dim=4)))
    small = count_parameters(UNet(unet_preset("cpu-small", 64, label_dim=4)))
    assert tiny < 200_000
    assert 2_000_000 <= small <= 8_000_000


@pytest.mark.slow
def test_gpu_preset_parameter_count():
    base = count_parameters(UNet(unet_preset("gpu-base", 128, label_dim=4)))
    assert 20_000_000 <= base <= 100_000_000


def test_different_contrasts_give_different_outputs():
    net = _tiny()
    x = torch.randn(1, 2, 16, 16).expand(3, -1, -1, -1)
    y = net(x, torch.full((3,), 0.1), torch.eye(3))
    for i in range(3):
        for j in range(i + 1, 3):
            rel = (y[i] - y[j]).norm() / y[i].norm()
            assert rel > 1e-3, (i, j, rel)


def test_same_contrast_same_output_and_label_broadcast():
    net = _tiny()
    x = torch.randn(2, 2, 16, 16)
    one = torch.eye(3)[1:2]
    torch.testing.assert_close(net(x, 0.3, one), net(x, torch.full((2,), 0.3), one.expand(2, -1)))


def test_noise_level_changes_output():
    net = _tiny()
    x = torch.randn(1, 2, 16, 16)
    lab = torch.eye(3)[:1]
    assert (net(x, -1.0, lab) - net(x, 1.0, lab)).abs().max() > 1e-4


def test_size_not_divisible_raises_shape_error():
    net = UNet(unet_preset("cpu-small", 64, label_dim=2))  # 4 levels -> multiple of 8
    with pytest.raises(ShapeError, match="divisible by 2\\*\\*3"):
        net(torch.randn(1, 2, 60, 64), torch.zeros(1), torch.eye(2)[:1])


def test_bad_inputs_raise_shape_error():
    net = _tiny()
    with pytest.raises(ShapeError, match="contrast_labels"):
        net(torch.randn(1, 2, 16, 16), torch.zeros(1), None)
    with pytest.raises(ShapeError, match="contrast_labels"):
        net(torch.randn(1, 2, 16, 16), torch.zeros(1), torch.eye(4)[:1])
    with pytest.raises(ShapeError, match="\\[B, 2, H, W\\]"):
        net(torch.randn(1, 3, 16, 16), torch.zeros(1), torch.eye(3)[:1])
    with pytest.raises(ShapeError, match="noise_labels has 2 entries"):
        net(torch.randn(3, 2, 16, 16), torch.zeros(2), torch.eye(3))
    with pytest.raises(ShapeError, match="augment_dim"):
        net(torch.randn(1, 2, 16, 16), torch.zeros(1), torch.eye(3)[:1], torch.zeros(1, 6))


def test_augment_labels_none_means_zero_and_labels_matter():
    net = _tiny(augment_dim=6)
    x = torch.randn(1, 2, 16, 16)
    lab = torch.eye(3)[:1]
    torch.testing.assert_close(net(x, 0.0, lab), net(x, 0.0, lab, torch.zeros(1, 6)), rtol=0, atol=0)
    assert (net(x, 0.0, lab) - net(x, 0.0, lab, torch.ones(1, 6))).abs().max() > 1e-4


def test_config_roundtrip_and_validation():
    cfg = unet_preset("cpu-small", 128, label_dim=5, augment_dim=6)
    d = cfg.to_dict()
    assert isinstance(d["channel_mult"], list)
    assert UNetConfig.from_dict(d) == cfg
    with pytest.raises(ReconInputError, match="unknown UNetConfig fields"):
        UNetConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ShapeError):
        UNetConfig(img_resolution=20, channel_mult=(1, 2, 2, 2))
    with pytest.raises(ReconInputError, match="unknown U-Net preset"):
        unet_preset("huge", 64, label_dim=1)


def test_attention_placed_at_lowest_level():
    net = UNet(unet_preset("tiny", 16, label_dim=1))
    assert net.config.attn_resolutions == (8,)
    assert sum(b.attn is not None for b in net.enc) == 1  # the block after the down-sampling
    assert net.enc[1].resample == "down" and net.enc[2].attn is not None
