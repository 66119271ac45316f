"""The three networks: shapes, sizes, layer placement, and their normalisations."""

import pytest
import torch
from torch import nn

from mnistlab import MODELS, build_model, count_parameters


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("hidden_size", [1000, 2000, 5000])
def test_output_shape_and_parameter_count(name, hidden_size):
    model = build_model(name, hidden_size)
    assert model(torch.randn(7, 784)).shape == (7, 10)
    weights_and_biases = 784 * hidden_size + hidden_size + hidden_size * 10 + 10
    extra = {"nmodel": 0, "bmodel": 2 * hidden_size, "wmodel": hidden_size + 10}[name]  # BN scale+shift; one g per row
    assert count_parameters(model) == weights_and_biases + extra


def test_layer_order_follows_the_protocol():
    assert list(dict(build_model("nmodel", 8).named_children())) == ["fc1", "relu", "fc2"]
    bmodel = build_model("bmodel", 8)
    assert list(dict(bmodel.named_children())) == ["fc1", "bn", "relu", "fc2"]  # BN before the non-linearity
    assert isinstance(bmodel.bn, nn.BatchNorm1d) and bmodel.bn.num_features == 8


def test_batch_norm_differs_between_train_and_eval():
    torch.manual_seed(0)
    model = build_model("bmodel", 16)
    x = torch.randn(32, 784) * 3 + 1
    model.train()
    train_out = model(x)  # normalises with the batch's statistics, updates the running ones
    model.eval()
    eval_out = model(x)  # normalises with the running statistics
    assert not torch.allclose(train_out, eval_out, atol=1e-3)
    assert torch.allclose(model(x[:1]), model(x)[:1], atol=1e-5)  # in eval, one image's output is independent of the batch
    assert model.bn.num_batches_tracked.item() == 1


def test_weight_norm_identity():
    torch.manual_seed(0)
    model = build_model("wmodel", 12)
    for layer in (model.fc1, model.fc2):
        g = layer.parametrizations.weight.original0  # (out, 1)
        v = layer.parametrizations.weight.original1  # (out, in)
        assert torch.allclose(layer.weight, g * v / v.norm(dim=1, keepdim=True), atol=1e-6)
        # Each row's length is |g| whatever v is: scaling v changes nothing, scaling g scales w.
        with torch.no_grad():
            v.mul_(5.0)
            g.mul_(2.0)
        assert torch.allclose(layer.weight.norm(dim=1), g.abs().squeeze(1), atol=1e-5)


def test_repr_explains_the_model():
    text = repr(build_model("bmodel", 1000))
    assert "BatchNorm1d(1000" in text and "in_features=784, out_features=1000" in text


@pytest.mark.parametrize("name, hidden_size, message", [
    ("cmodel", 10, "unknown model 'cmodel'; valid: nmodel, bmodel, wmodel"),
    ("nmodel", 0, "hidden_size must be a positive integer, got 0"),
    ("nmodel", -3, "hidden_size must be a positive integer, got -3"),
    ("nmodel", 2.5, "hidden_size must be a positive integer, got 2.5"),
])
def test_bad_arguments_are_rejected(name, hidden_size, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_model(name, hidden_size)
