"""Prior-based reconstruction of a stack (scaling, padding, seeds, mean/std, fast mode, polish)."""

import pytest
import torch

from models.errors import ReconInputError, UnknownContrastError
from models.mri.coil_simulation import brain_phantom, simulate_coil_maps, simulate_kspace
from models.mri.masks import create_mask_func
from models.prior.contrasts import ContrastVocabulary
from models.prior.normalization import DEFAULT_NORMALIZATION
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, unet_preset
from models.reconstruction import ReconSettings, reconstruct


class GaussianPrecond(torch.nn.Module):
    """Exact denoiser of an independent Gaussian prior with a per-pixel std map (two real channels)."""

    def __init__(self, mean, std_map):
        super().__init__()
        self.mean, self.std_map = mean, std_map
        self.vocabulary = ContrastVocabulary(["FLAIR"])
        self.sigma_min, self.sigma_max = 0.002, 80.0
        self.normalization, self.error_curves = DEFAULT_NORMALIZATION, {}

    def forward(self, x, sigma, contrast_labels=None):
        s2 = sigma.view(-1, 1, 1, 1) ** 2
        v = self.std_map ** 2
        mean = torch.stack([self.mean.real, self.mean.imag])
        return (v * x + s2 * mean) / (v + s2)


def _scan(size=32, coils=4, acceleration=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = brain_phantom((size, size), generator=g).image
    maps = simulate_coil_maps(coils, (size, size), generator=g)
    kspace = simulate_kspace(image, maps, snr=50, generator=g).kspace
    mask = create_mask_func("equispaced", acceleration, 6)(size).mask
    return (kspace * mask).to(torch.complex64), maps.unsqueeze(0), mask, image


def test_posterior_std_is_zero_where_samples_must_agree():
    kspace, maps, mask, image = _scan()
    std_map = torch.ones(32, 32)
    std_map[:, :16] = 0.0  # the prior is certain on the left half
    prior = GaussianPrecond(torch.zeros(32, 32, dtype=torch.complex64), std_map)
    out = reconstruct(kspace, maps, mask, ReconSettings(method="dps", sampler="dps", zeta=1.0, num_steps=10, num_samples=4),
                      prior=prior)
    assert out.std is not None and out.std.shape == (1, 32, 32)
    assert float(out.std[0, :, :16].max()) < 1e-5
    assert float(out.std[0, :, 16:].mean()) > 1e-3
    assert out.info["num_samples"] == 4 and out.info["nfe"] == 4 * (2 * 10 - 1)


def test_output_scales_with_the_input():
    kspace, maps, mask, _ = _scan()
    prior = GaussianPrecond(torch.zeros(32, 32, dtype=torch.complex64), torch.full((32, 32), 0.5))
    settings = ReconSettings(method="dps", zeta=2.0, num_steps=8)
    a = reconstruct(kspace, maps, mask, settings, prior=prior).image
    b = reconstruct(kspace * 1000, maps, mask, settings, prior=prior).image
    torch.testing.assert_close(b / 1000, a, rtol=1e-3, atol=1e-3 * float(a.abs().max()))


@pytest.fixture(scope="module")
def tiny_prior():
    torch.manual_seed(0)
    vocab = ContrastVocabulary(["T1", "FLAIR"])
    net = UNet(unet_preset("tiny", 32, label_dim=len(vocab)))
    return EDMPrecond(net, vocabulary=vocab).eval().requires_grad_(False)


def test_tiny_unet_prior_shapes_determinism_and_padding(tiny_prior):
    kspace, maps, mask, _ = _scan(size=31)  # 31 is not a multiple of the network's 2
    kspace = torch.cat([kspace, kspace])
    maps = torch.cat([maps, maps])
    settings = ReconSettings(method="dps", sampler="dps", zeta=1.0, num_steps=4, seed=7, max_batch=1)
    a = reconstruct(kspace, maps, mask, settings, prior=tiny_prior)
    b = reconstruct(kspace, maps, mask, settings, prior=tiny_prior)
    assert a.image.shape == (2, 31, 31) and a.image.dtype == torch.complex64
    assert torch.equal(a.image, b.image)
    assert torch.isfinite(a.image).all()


def test_final_cg_polish_and_fast_mode_fit_the_data(tiny_prior):
    kspace, maps, mask, _ = _scan(size=32)
    from models.mri.operators import SenseOperator
    op = SenseOperator(maps, mask)

    def residual(image):
        return float((op.forward(image) - kspace).abs().norm() / kspace.abs().norm())

    plain = reconstruct(kspace, maps, mask, ReconSettings(method="dps", zeta=1.0, num_steps=4), prior=tiny_prior)
    polished = reconstruct(kspace, maps, mask, ReconSettings(method="dps", zeta=1.0, num_steps=4,
                                                             final_cg_iterations=5), prior=tiny_prior)
    fast = reconstruct(kspace, maps, mask, ReconSettings(method="dps", sampler="dds", zeta=1.0, num_steps=4,
                                                         noise_variance=1e-4), prior=tiny_prior)
    assert residual(polished.image) < 0.5 * residual(plain.image)
    assert residual(fast.image) < residual(plain.image)
    assert fast.info["nfe"] == 4 and fast.info["sampler"] == "dds"


def test_dds_weighs_the_data_in_physical_units(tiny_prior):
    """Scaling the scan's units (k-space by c, its noise variance by c^2) scales the image by c: one zeta
    serves any scanner's units; a noisier scan is pulled to its data less."""
    kspace, maps, mask, _ = _scan(size=32)
    settings = ReconSettings(method="dps", sampler="dds", zeta=1.0, num_steps=6, noise_variance=1e-3, seed=3)
    base = reconstruct(kspace, maps, mask, settings, prior=tiny_prior).image
    scaled = reconstruct(kspace * 50.0, maps, mask, settings.with_changes(noise_variance=1e-3 * 2500.0),
                         prior=tiny_prior).image
    assert torch.allclose(scaled / 50.0, base, atol=1e-4 * float(base.abs().max()))
    from models.mri.operators import SenseOperator
    op = SenseOperator(maps, mask)
    noisy = reconstruct(kspace, maps, mask, settings.with_changes(noise_variance=10.0), prior=tiny_prior).image
    assert float((op.forward(noisy) - kspace).norm()) > float((op.forward(base) - kspace).norm())



def test_dds_noise_floor_adds_to_the_scan_noise_in_the_prior_units(tiny_prior):
    """``dds_noise_floor`` f (prior's units) weighs the data as a scan noise variance of v + f / scale^2 would:
    a model-error term on top of the measured noise, the same for every scanner's units."""
    from models.sampler.posterior import kspace_scale
    kspace, maps, mask, _ = _scan(size=32)
    settings = ReconSettings(method="dps", sampler="dds", zeta=1.0, num_steps=5, noise_variance=1e-3, seed=2)
    scale = float(kspace_scale(kspace, maps, mask, DEFAULT_NORMALIZATION)[0])
    floored = reconstruct(kspace, maps, mask, settings.with_changes(dds_noise_floor=0.01), prior=tiny_prior).image
    same = reconstruct(kspace, maps, mask, settings.with_changes(noise_variance=1e-3 + 0.01 / scale ** 2),
                       prior=tiny_prior).image
    plain = reconstruct(kspace, maps, mask, settings, prior=tiny_prior).image
    assert torch.allclose(floored, same, atol=1e-4 * float(same.abs().max()))
    assert not torch.allclose(floored, plain, atol=1e-3 * float(plain.abs().max()))
    with pytest.raises(ReconInputError, match="dds_noise_floor"):
        settings.with_changes(dds_noise_floor=-1.0)

def test_dds_estimates_the_noise_when_none_is_given_and_warm_starts(tiny_prior, caplog):
    kspace, maps, mask, _ = _scan(size=32)
    settings = ReconSettings(method="dps", sampler="dds", zeta=1.0, num_steps=4)
    with caplog.at_level("INFO", logger="models.sampler.posterior"):
        out = reconstruct(kspace, maps, mask, settings, prior=tiny_prior)
    assert "estimated from the outer readout band" in caplog.text and torch.isfinite(out.image).all()
    warm = reconstruct(kspace, maps, mask, settings.with_changes(sigma_start=2.0), prior=tiny_prior)
    assert torch.isfinite(warm.image).all() and not torch.equal(warm.image, out.image)
    with pytest.raises(ReconInputError, match="sigma_start"):
        settings.with_changes(sigma_start=-1.0)


@pytest.mark.parametrize("eta, churn", [(0.0, 0.0), (0.7, 0.0), (1.0, 5.0)])
def test_dds_draws_do_not_depend_on_how_slices_are_batched(tiny_prior, eta, churn):
    kspace, maps, mask, _ = _scan(size=31)  # padded to the network's grid
    kspace, maps = torch.cat([kspace, 0.5 * kspace]), torch.cat([maps, maps])
    settings = ReconSettings(method="dps", sampler="dds", zeta=2.0, num_steps=4, num_samples=3, noise_variance=1e-3,
                             dds_eta=eta, dds_churn=churn)
    together = reconstruct(kspace, maps, mask, settings, prior=tiny_prior)
    apart = reconstruct(kspace, maps, mask, settings.with_changes(max_batch=1), prior=tiny_prior)
    assert together.image.shape == (2, 31, 31) and together.std.shape == (2, 31, 31)
    torch.testing.assert_close(together.image, apart.image, rtol=1e-4, atol=1e-5 * float(apart.image.abs().max()))
    assert together.info["nfe"] == 4 * 3 and apart.info["nfe"] == 4 * 3 * 2
    assert float(together.std.max()) > 0


def test_dds_eta_draws_fresh_noise_reproducibly(tiny_prior):
    kspace, maps, mask, _ = _scan(size=32)
    settings = ReconSettings(method="dps", sampler="dds", zeta=2.0, num_steps=5, noise_variance=1e-3, dds_eta=0.5)
    first, again = (reconstruct(kspace, maps, mask, settings, prior=tiny_prior).image for _ in range(2))
    ode = reconstruct(kspace, maps, mask, settings.with_changes(dds_eta=0.0), prior=tiny_prior).image
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, ode, atol=1e-3 * float(ode.abs().max()))
    with pytest.raises(ReconInputError, match="dds_eta"):
        settings.with_changes(dds_eta=1.5)


def test_unknown_contrast_lists_known_ones(tiny_prior):
    kspace, maps, mask, _ = _scan(size=32)
    with pytest.raises(UnknownContrastError, match="FLAIR"):
        reconstruct(kspace, maps, mask, ReconSettings(method="dps", contrast="DWI", zeta=1.0, num_steps=2),
                    prior=tiny_prior)


def test_output_is_zero_outside_the_coil_support_unless_asked(tiny_prior):
    kspace, maps, mask, _ = _scan(size=32)
    maps = maps.clone()
    maps[..., :4] = 0  # no coil reaches the first four columns
    masked = reconstruct(kspace, maps, mask, ReconSettings(method="dps", zeta=0.5, num_steps=3, num_samples=2),
                         prior=tiny_prior)
    assert masked.image[..., :4].abs().max() == 0 and masked.std[..., :4].max() == 0
    assert masked.image[..., 4:].abs().max() > 0
    free = reconstruct(kspace, maps, mask, ReconSettings(method="dps", zeta=0.5, num_steps=3,
                                                         mask_to_coil_support=False), prior=tiny_prior)
    assert free.image[..., :4].abs().max() > 0


def test_unconditional_samples_follow_a_gaussian_prior():
    from models.sampler.unconditional import sample_prior

    class Prior(GaussianPrecond):
        def parameters(self):
            return iter([torch.zeros(1)])

    mean = torch.full((16, 16), 0.5 + 0.25j, dtype=torch.complex64)
    prior = Prior(mean, torch.full((16, 16), 0.3))
    x = sample_prior(prior, "FLAIR", 64, (16, 16), num_steps=24, generator=torch.Generator().manual_seed(0))
    assert x.shape == (64, 16, 16) and x.dtype == torch.complex64
    assert (x.mean(0) - mean).abs().mean() < 0.05
    assert x.real.std(0).mean() == pytest.approx(0.3, rel=0.1)


def test_diverged_slices_flags_a_rising_or_non_finite_residual():
    from models.sampler.dps import diverged_slices
    steps = torch.linspace(1.0, 0.1, 10)
    stable = steps.clone()
    rising = torch.cat([steps[:6], steps[5] * 1.6 ** torch.arange(1, 5)])  # grows over the last steps
    broken = steps.clone()
    broken[-1] = float("nan")
    flags = diverged_slices(torch.stack([stable, rising, broken], dim=1))
    assert flags.tolist() == [False, True, True]
    assert diverged_slices(None).numel() == 0


def test_a_slice_on_which_dps_diverges_is_drawn_again_at_half_the_zeta(caplog):
    kspace, maps, mask, _ = _scan()
    prior = GaussianPrecond(torch.zeros(32, 32, dtype=torch.complex64), torch.full((32, 32), 0.5))
    too_high = ReconSettings(method="dps", sampler="dps", zeta=1.6, num_steps=12)
    with caplog.at_level("WARNING", logger="models.sampler.posterior"):
        out = reconstruct(kspace, maps, mask, too_high, prior=prior)
    assert "DPS diverged on slice(s) [0] at zeta 1.6" in caplog.text
    half = reconstruct(kspace, maps, mask, too_high.with_changes(zeta=0.8), prior=prior)
    torch.testing.assert_close(out.image, half.image)  # the retry's draw fits the data better and is kept


def test_noise_schedule_settings_reach_the_sampler():
    kspace, maps, mask, _ = _scan()
    prior = GaussianPrecond(torch.zeros(32, 32, dtype=torch.complex64), torch.full((32, 32), 0.5))
    base = ReconSettings(method="dps", zeta=0.5, num_steps=6)
    default = reconstruct(kspace, maps, mask, base, prior=prior).image
    again = reconstruct(kspace, maps, mask, base.with_changes(sigma_max=80.0, rho=7.0), prior=prior).image
    low = reconstruct(kspace, maps, mask, base.with_changes(sigma_max=2.0, rho=3.0), prior=prior).image
    assert torch.equal(default, again)
    assert not torch.allclose(default, low)
    with pytest.raises(ReconInputError, match="sigma_max: must be > 0"):
        ReconSettings(sigma_max=0.0)
