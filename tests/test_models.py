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


def test_bmodel_normalises_before_the_relu():
    """By behaviour, not by layer names: the output is fc2(relu(bn(fc1 x))), not fc2(bn(relu(fc1 x)))."""
    torch.manual_seed(0)
    model = build_model("bmodel", 16).train()
    x = torch.randn(32, 784) * 3 + 1
    bn = nn.BatchNorm1d(16)
    with torch.no_grad():
        before = model.fc2(torch.relu(bn(model.fc1(x))))
        after = model.fc2(bn(torch.relu(model.fc1(x))))
        out = model(x)
    torch.testing.assert_close(out, before)
    assert not torch.allclose(out, after, atol=1e-3)


def test_the_three_models_start_from_the_same_weights_for_a_seed():
    """The paired design (PROTOCOL): with the same seed, nmodel, bmodel and wmodel begin with the same fc1 and
    fc2 weights and biases (weight norm re-parametrises them: g is each row's norm, v the weights)."""
    weights = {}
    for name in MODELS:
        torch.manual_seed(3)
        model = build_model(name, 12)
        weights[name] = [model.fc1.weight, model.fc1.bias, model.fc2.weight, model.fc2.bias]
    for name in ("bmodel", "wmodel"):
        for ours, plain in zip(weights[name], weights["nmodel"]):
            torch.testing.assert_close(ours, plain, rtol=0, atol=1e-6)
    torch.manual_seed(4)
    assert not torch.allclose(build_model("nmodel", 12).fc1.weight, weights["nmodel"][0])


def test_weight_norm_gives_one_scale_per_output_unit():
    """dim=0, as Salimans & Kingma: each output unit's weight row has length |g|, whatever v's scale."""
    torch.manual_seed(0)
    model = build_model("wmodel", 12)
    for layer in (model.fc1, model.fc2):
        g = layer.parametrizations.weight.original0  # (out, 1)
        assert g.shape == (layer.out_features, 1)
        with torch.no_grad():
            layer.parametrizations.weight.original1.mul_(5.0)
            g.mul_(2.0)
        torch.testing.assert_close(layer.weight.norm(dim=1), g.abs().squeeze(1))


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
