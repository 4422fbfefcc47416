"""Contrast vocabulary and growing the contrast embedding by one slot."""

import pytest
import torch

from models.errors import ReconInputError, UnknownContrastError
from models.prior.contrasts import ContrastVocabulary, add_contrast_slot
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, unet_preset

NAMES = ["T1", "T2", "PD"]


def _precond():
    torch.manual_seed(1)
    net = UNet(unet_preset("tiny", 16, label_dim=len(NAMES)))
    return EDMPrecond(net, vocabulary=ContrastVocabulary(NAMES)).eval()


def test_one_hot_and_index():
    vocab = ContrastVocabulary(NAMES)
    labels = vocab.one_hot(["PD", "T1"])
    assert labels.dtype == torch.float32
    torch.testing.assert_close(labels, torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    assert vocab.one_hot("T2").shape == (1, 3)
    assert vocab.label_dim == 3 and "T2" in vocab and "FLAIR" not in vocab


def test_unknown_contrast_lists_known_names():
    vocab = ContrastVocabulary(NAMES)
    with pytest.raises(UnknownContrastError, match=r"'FLAIR'.*\['T1', 'T2', 'PD'\]"):
        vocab.one_hot(["T1", "FLAIR"])
    assert issubclass(UnknownContrastError, ReconInputError)


def test_add_returns_new_vocabulary_and_rejects_duplicates():
    vocab = ContrastVocabulary(NAMES)
    grown = vocab.add("FLAIR")
    assert vocab.names == tuple(NAMES)
    assert grown.names == tuple(NAMES) + ("FLAIR",)
    assert grown.index("FLAIR") == 3
    with pytest.raises(ReconInputError, match="already"):
        grown.add("T1")
    with pytest.raises(ReconInputError, match="duplicate"):
        ContrastVocabulary(["T1", "T1"])


@pytest.mark.parametrize("init", ["mean", "zero"])
def test_add_slot_keeps_old_outputs_exactly(init):
    model = _precond()
    old_vocab = model.vocabulary
    x = torch.randn(3, 2, 16, 16)
    sigma = torch.tensor([0.05, 0.5, 5.0])
    before = model(x, sigma, old_vocab.one_hot(NAMES))
    emb_before = model.net.contrast_mlp(old_vocab.one_hot(NAMES))

    new_vocab = add_contrast_slot(model, old_vocab, "FLAIR", init=init)

    assert model.vocabulary is new_vocab and new_vocab.label_dim == 4
    assert model.net.config.label_dim == 4
    assert model.net.contrast_mlp[0].weight.shape[1] == 4
    after = model(x, sigma, new_vocab.one_hot(NAMES))
    assert torch.equal(model.net.contrast_mlp(new_vocab.one_hot(NAMES)), emb_before)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    new = model(x, sigma, new_vocab.one_hot(["FLAIR"] * 3))
    assert torch.isfinite(new).all()
    assert (new - after).abs().max() > 1e-5  # the new slot is a distinct condition


def test_new_column_initialisation():
    model = _precond()
    w_old = model.net.contrast_mlp[0].weight.detach().clone()
    add_contrast_slot(model, model.vocabulary, "FLAIR", init="mean")
    torch.testing.assert_close(model.net.contrast_mlp[0].weight[:, 3], w_old.mean(dim=1))
    model2 = _precond()
    vocab = add_contrast_slot(model2, model2.vocabulary, "FLAIR", init="zero")
    assert torch.equal(model2.net.contrast_mlp[0].weight[:, 3], torch.zeros(w_old.shape[0]))
    # zero column: the new label's embedding equals that of an all-zero label vector
    torch.testing.assert_close(model2.net.contrast_mlp(vocab.one_hot("FLAIR")),
                               model2.net.contrast_mlp(torch.zeros(1, 4)))


def test_new_slot_is_trainable():
    model = _precond().train()
    vocab = add_contrast_slot(model, model.vocabulary, "FLAIR")
    out = model(torch.randn(1, 2, 16, 16), 1.0, vocab.one_hot("FLAIR"))
    out.square().mean().backward()
    grad = model.net.contrast_mlp[0].weight.grad
    assert grad[:, 3].abs().sum() > 0
    assert torch.equal(grad[:, :3], torch.zeros_like(grad[:, :3]))


def test_add_slot_rejects_mismatched_vocabulary():
    model = _precond()
    with pytest.raises(ReconInputError, match="2 contrasts but the network has 3"):
        add_contrast_slot(model, ContrastVocabulary(["T1", "T2"]), "FLAIR")
    with pytest.raises(ReconInputError, match="not contrast-conditioned"):
        add_contrast_slot(UNet(unet_preset("tiny", 16, label_dim=0)), ContrastVocabulary([]), "FLAIR")
