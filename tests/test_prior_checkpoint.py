"""Checkpoint I/O: round trip, EMA as main weights, fp16, and typed rejection of bad files."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.errors import CheckpointError
from models.prior.checkpoint import METADATA_KEY, load_prior, read_metadata, save_prior
from models.prior.contrasts import ContrastVocabulary
from models.prior.ema import EMA
from models.prior.normalization import IntensityNormalization
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, unet_preset

NAMES = ["T1", "T2", "FLAIR"]


def _precond(seed=0):
    torch.manual_seed(seed)
    net = UNet(unet_preset("tiny", 16, label_dim=3, augment_dim=6))
    return EDMPrecond(net, sigma_data=0.4, sigma_min=0.003, sigma_max=60.0,
                      vocabulary=ContrastVocabulary(NAMES)).eval()


def _outputs(model):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 2, 16, 16, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([0.01, 0.5, 20.0]), torch.eye(3))


@pytest.fixture
def saved(tmp_path):
    model = _precond()
    path = tmp_path / "prior.safetensors"
    meta = save_prior(path, model, image_size=(16, 16), normalization=IntensityNormalization(99.5),
                      training={"stage": "pretrain", "seed": 1}, steps=123)
    return model, path, meta


def test_roundtrip_same_outputs_and_metadata(saved):
    model, path, meta = saved
    loaded, meta2 = load_prior(path, "cpu")
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(_outputs(loaded), _outputs(model))
    assert meta2.contrasts == NAMES and loaded.vocabulary.names == tuple(NAMES)
    assert (loaded.sigma_data, loaded.sigma_min, loaded.sigma_max) == (0.4, 0.003, 60.0)
    assert meta2.image_size == [16, 16] and meta2.steps == 123
    assert meta2.training == {"stage": "pretrain", "seed": 1}
    assert meta2.intensity_normalization.percentile == 99.5
    assert meta2.unet_config == model.net.config
    assert read_metadata(path).sha256 == meta.sha256


def test_ema_weights_are_the_main_weights(tmp_path):
    model = _precond()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    ema.update(model)
    path = tmp_path / "p.safetensors"
    meta = save_prior(path, model, image_size=(16, 16), ema=ema, include_raw=True)
    assert meta.weights == "ema"
    main, _ = load_prior(path)
    raw, _ = load_prior(path, weights="raw")
    assert torch.equal(_outputs(main), _outputs(ema.module))
    assert torch.equal(_outputs(raw), _outputs(model))
    assert not torch.equal(_outputs(main), _outputs(raw))
    no_raw = tmp_path / "q.safetensors"
    save_prior(no_raw, model, image_size=(16, 16))
    with pytest.raises(CheckpointError, match="no tensors under 'raw.'"):
        load_prior(no_raw, weights="raw")


def test_fp16_storage_loads_as_fp32(tmp_path):
    model = _precond()
    path16, path32 = tmp_path / "h.safetensors", tmp_path / "f.safetensors"
    save_prior(path16, model, image_size=(16, 16), fp16=True)
    save_prior(path32, model, image_size=(16, 16))
    assert path16.stat().st_size < 0.6 * path32.stat().st_size
    loaded, meta = load_prior(path16)
    assert meta.dtype == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    ref, out = _outputs(model), _outputs(loaded)
    assert not torch.equal(out, ref)
    assert (out - ref).abs().max() < 1e-2 * ref.abs().max()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_prior(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    _, path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_prior(path)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError):
        load_prior(path)


def test_corrupt_tensor_bytes_fail_checksum(saved):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_prior(path)


def test_pickle_file_is_rejected_without_unpickling(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_precond().state_dict(), path)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_prior(path)


def _rewrite(path, edit):
    """Rewrite the checkpoint with metadata JSON changed by ``edit(dict) -> dict or str``."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()[METADATA_KEY])
    new = edit(meta)
    save_file(tensors, str(path), metadata={METADATA_KEY: new if isinstance(new, str) else json.dumps(new)})


def test_bad_json(saved):
    _, path, _ = saved
    _rewrite(path, lambda m: "{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_prior(path)


def test_missing_metadata_fields(saved):
    _, path, _ = saved
    _rewrite(path, lambda m: {k: v for k, v in m.items() if k != "sigma_data"})
    with pytest.raises(CheckpointError, match="sigma_data"):
        load_prior(path)


def test_vocabulary_disagrees_with_label_dim(saved):
    _, path, _ = saved
    _rewrite(path, lambda m: {**m, "contrasts": ["T1", "T2"]})
    with pytest.raises(CheckpointError, match="label_dim=3"):
        load_prior(path)


def test_architecture_mismatch_names_keys(saved):
    _, path, _ = saved
    _rewrite(path, lambda m: {**m, "unet": {**m["unet"], "model_channels": 8}})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_prior(path)
    _rewrite(path, lambda m: {**m, "unet": {**m["unet"], "model_channels": 16, "augment_dim": 0}})
    with pytest.raises(CheckpointError, match="unexpected keys .*map_augment"):
        load_prior(path)


def test_checkpoint_after_adding_a_slot(tmp_path):
    from models.prior.contrasts import add_contrast_slot

    model = _precond()
    add_contrast_slot(model, model.vocabulary, "DWI")
    path = tmp_path / "ft.safetensors"
    save_prior(path, model, image_size=(16, 16))
    loaded, meta = load_prior(path)
    assert meta.contrasts == NAMES + ["DWI"] and meta.unet["label_dim"] == 4
    x = torch.randn(1, 2, 16, 16)
    lab = loaded.vocabulary.one_hot("DWI")
    with torch.no_grad():
        assert torch.equal(loaded(x, 1.0, lab), model(x, 1.0, lab))
