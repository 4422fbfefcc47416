"""EDMLoss: weighting, reproducibility, augmentation hook, and a tiny overfit."""

import pytest
import torch

from models.prior.augment import AUGMENT_DIM, AugmentPipe
from models.prior.loss import EDMLoss
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, unet_preset


def _images(n=4, seed=0):
    """Smooth random complex blobs, as two channels [n, 2, 16, 16], std ~0.5."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=16, mode="bilinear", align_corners=False)
    return 0.5 * x / x.std()


def test_weight_formula_with_a_zero_denoiser():
    loss = EDMLoss(sigma_data=0.5)
    y = _images()
    sigma = torch.tensor([0.1, 0.5, 1.0, 10.0])
    out = loss(lambda x, s, c, a: torch.zeros_like(x), y, None, sigma=sigma)
    w = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(out, w.view(-1, 1, 1, 1) * y ** 2)


def test_sigma_distribution_is_lognormal():
    loss = EDMLoss(P_mean=-1.2, P_std=1.2)
    s = loss.sample_sigma(20000, torch.zeros(1), torch.Generator().manual_seed(0)).log()
    assert abs(s.mean().item() + 1.2) < 0.05
    assert abs(s.std().item() - 1.2) < 0.05


def test_reproducible_with_generator():
    torch.manual_seed(0)
    net = EDMPrecond(UNet(unet_preset("tiny", 16, label_dim=2))).eval()
    y, lab = _images(), torch.eye(2)[[0, 1, 0, 1]]
    loss = EDMLoss()
    a = loss(net, y, lab, generator=torch.Generator().manual_seed(5))
    b = loss(net, y, lab, generator=torch.Generator().manual_seed(5))
    c = loss(net, y, lab, generator=torch.Generator().manual_seed(6))
    assert a.shape == y.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_pipe_labels_reach_the_network():
    seen = {}

    def net(x, sigma, contrast, augment_labels):
        seen["aug"] = augment_labels
        return torch.zeros_like(x)

    pipe = AugmentPipe(p=1.0)
    EDMLoss()(net, _images(), None, augment_pipe=pipe, generator=torch.Generator().manual_seed(0))
    assert seen["aug"].shape == (4, AUGMENT_DIM)
    assert seen["aug"].abs().sum() > 0


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from threads, and on a loaded 2-core box threads thrash."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_loss_decreases_on_tiny_overfit_set(one_thread):
    torch.manual_seed(0)
    net = EDMPrecond(UNet(unet_preset("tiny", 16, label_dim=2)))
    y, lab = _images(), torch.eye(2)[[0, 1, 0, 1]]
    loss_fn = EDMLoss()
    sigmas = [torch.full((4,), s) for s in (0.05, 0.2, 0.5, 1.0, 2.0)]

    def evaluate():
        net.eval()
        with torch.no_grad():
            total = sum(loss_fn(net, y, lab, generator=torch.Generator().manual_seed(i), sigma=s).mean()
                        for i, s in enumerate(sigmas))
        net.train()
        return total.item() / len(sigmas)

    initial = evaluate()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(123)
    for _ in range(100):
        opt.zero_grad()
        loss_fn(net, y, lab, generator=g).mean().backward()
        opt.step()
    final = evaluate()
    assert final < 0.6 * initial, (initial, final)
