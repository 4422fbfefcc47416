"""Pixel size as part of the data: banks draw it per slice, checkpoints record what they were trained
on, and the reconstruction gadget warns for a scan outside it."""

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from gadgets.dps_recon import recon_pixel_mm, warn_if_pixels_outside_prior
from models.data import sources as S
from models.data.anatomy import make_subject
from models.data.bank_builder import BankSpec, build_slice_bank, slice_pixel_mm
from models.data.slice_bank import SliceBank, read_slice_bank, write_slice_bank
from models.prior.contrasts import ContrastVocabulary


def test_pixel_sizes_are_drawn_in_range_and_repeatable():
    spec = BankSpec(split="train", contrasts=("T1",), subjects_per_source=1, pixel_mm_range=(0.9, 2.0))
    draws = [slice_pixel_mm(spec, f"sub{i}", k) for i in range(20) for k in range(5)]
    assert min(draws) >= 0.9 and max(draws) <= 2.0 and max(draws) - min(draws) > 0.5
    assert slice_pixel_mm(spec, "sub3", 2) == draws[17]
    assert slice_pixel_mm(BankSpec(split="train", contrasts=("T1",), subjects_per_source=1), "sub0", 0) == 240 / 128


def test_a_bank_records_pixel_sizes_and_old_banks_fall_back_to_their_spec(tmp_path):
    images = np.ones((3, 8, 8), np.complex64)
    labels = dict(contrast=["T1"] * 3, subject=["a", "a", "b"], source=["s"] * 3, slice_index=[0, 1, 0])
    new = write_slice_bank(tmp_path / "new.h5", images, normalization={}, pixel_mm=[0.9, 1.5, 2.0], **labels)
    bank = SliceBank(read_slice_bank(new), ["T1"], ContrastVocabulary(["T1"]))
    assert bank.pixel_range_mm == [0.9, 2.0]
    old = write_slice_bank(tmp_path / "old.h5", images, normalization={"spec": {"fov_mm": 240.0, "matrix": 128}},
                           **labels)
    assert SliceBank(read_slice_bank(old), ["T1"], ContrastVocabulary(["T1"])).pixel_range_mm == [1.875, 1.875]
    unknown = write_slice_bank(tmp_path / "unknown.h5", images, normalization={}, **labels)
    assert read_slice_bank(unknown).pixel_mm is None


@pytest.mark.skipif(not S.is_available("icbm152_2009a"), reason="nilearn (ICBM152 files) not installed")
def test_rendered_slices_show_the_drawn_field_of_view(tmp_path):
    spec = BankSpec(split="train", contrasts=("T1", "T2"), subjects_per_source=1, slices_per_subject=2,
                    matrix=64, pixel_mm_range=(0.9, 2.0))
    record = read_slice_bank(build_slice_bank(tmp_path / "b.h5", spec, workers=1, progress=False))
    assert record.pixel_mm is not None and len(set(np.round(record.pixel_mm, 4))) > 1
    # both contrasts of a slice share its geometry; a slice is (source, subject, slice index): every
    # installed source contributes a subject, and slice indices repeat across them
    slices = list(zip(record.source, record.subject, record.slice_index))
    for key in set(slices):
        same = np.array([s == key for s in slices])
        assert same.sum() == 2 and len(set(record.pixel_mm[same])) == 1
    # a larger pixel widens the field of view, so the head takes up less of the matrix: the same slice
    # at 2.0 mm has less non-background than at 0.9 mm (0.52 vs 0.75 of it for ICBM152 slice 0); compared
    # within one slice, since anatomy and slice position change the fill more than the pixel size does
    subject = make_subject(record.subject[0], seed=spec.seed, lesion_probability=spec.lesion_probability)
    k = int(record.slice_index[0])

    def fill(pixel_mm):
        image = subject.sample(k, "T1", matrix=(64, 64), fov_mm=pixel_mm * 64).image
        return (np.abs(image) > 0.05 * np.abs(image).max()).mean()

    assert fill(2.0) < fill(0.9)


def header_with_pixels(fov, matrix):
    space = SimpleNamespace(fieldOfView_mm=SimpleNamespace(x=fov, y=fov), matrixSize=SimpleNamespace(x=matrix, y=matrix))
    return SimpleNamespace(encoding=[SimpleNamespace(reconSpace=space)])


def test_the_gadget_warns_for_pixels_the_prior_never_saw(caplog):
    prior = SimpleNamespace(pixel_range_mm=[1.8, 1.9])
    assert recon_pixel_mm(header_with_pixels(240, 128)) == (1.875, 1.875)
    with caplog.at_level(logging.WARNING):
        assert not warn_if_pixels_outside_prior(prior, header_with_pixels(240, 128))
        assert warn_if_pixels_outside_prior(prior, header_with_pixels(240, 256))  # 0.94 mm
    assert "0.94 x 0.94 mm, outside the 1.80-1.90 mm" in caplog.text
    assert not warn_if_pixels_outside_prior(SimpleNamespace(), header_with_pixels(240, 256))  # not recorded


def test_a_trained_checkpoint_records_its_pixel_sizes_and_the_loaded_prior_carries_them(tmp_path):
    from gadgets.cli import main as cli_main
    from models.prior.checkpoint import load_prior
    from test_training import _make_bank, _write_config

    plain = read_slice_bank(_make_bank(tmp_path / "plain.h5"))
    bank = write_slice_bank(tmp_path / "bank.h5", plain.images, plain.contrast, plain.subject, plain.source,
                            plain.slice_index, {}, pixel_mm=np.linspace(1.0, 1.6, len(plain.images)))
    config = _write_config(tmp_path / "cfg.yaml", bank, total_steps=2, val_every=2, checkpoint_every=2)
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "run"),
                     "--no-progress"]) == 0
    prior, meta = load_prior(tmp_path / "run" / "best.safetensors")
    trained_on = sorted(set(np.round(np.linspace(1.0, 1.6, len(plain.images))[np.isin(plain.contrast, ["T1", "T2"])], 3)))
    assert meta.training["pixel_mm"] == [trained_on[0], trained_on[-1]]
    assert prior.pixel_range_mm == meta.training["pixel_mm"]
