"""The training options of the "beyond" study: distortions on the device, dropout, the cosine schedule; each off by
default, each decided by the seed, each resumed exactly from a checkpoint."""

import numpy as np
import pytest
import torch

from mnistlab import Config, build_model, run
from mnistlab.augment import ELASTIC_SIGMA, Distort
from mnistlab.data import MEAN, STD, MNISTSplits, Split

BACKGROUND = -MEAN / STD  # a blank pixel, normalised


def subset(splits, n):
    return MNISTSplits(Split(splits.train.x[:n], splits.train.y[:n]), splits.val, splits.test, splits.test_labels)


def test_a_shift_moves_each_image_by_whole_pixels_within_the_bound(small_data):
    images = small_data.train.x[:50]
    moved = Distort(shift=3)(images, torch.Generator().manual_seed(0)).view(-1, 28, 28)
    padded = torch.nn.functional.pad(images.view(-1, 28, 28), (3, 3, 3, 3), value=BACKGROUND)
    offsets = set()
    for original, out in zip(padded, moved):
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.allclose(out, original[3 + dy:31 + dy, 3 + dx:31 + dx], atol=1e-5)]
        assert found, "not a translation by whole pixels of at most 3"
        offsets.add(found[0])
    assert len(offsets) > 10  # drawn per image, not one shift for the batch


def test_elastic_distortions_smooth_like_simards_and_keep_the_background(small_data):
    from scipy.ndimage import gaussian_filter

    distort = Distort(elastic=34.0)
    field = np.random.default_rng(0).uniform(-1, 1, (28, 28)).astype(np.float32)
    ours = (distort.blur @ torch.from_numpy(field) @ distort.blur.T).numpy()
    np.testing.assert_allclose(ours, gaussian_filter(field, ELASTIC_SIGMA, mode="constant", truncate=3.0), atol=1e-6)
    images = small_data.train.x[:20]
    out = distort(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and not torch.allclose(out, images, atol=1e-3)
    corners = out.view(-1, 28, 28)[:, :2, :2]  # MNIST's corners are blank, and stay so
    assert torch.allclose(corners, torch.full_like(corners, BACKGROUND), atol=1e-4)
    # The digit is bent, not erased: most of its ink is still there.
    ink = lambda x: (x * STD + MEAN).clamp(min=0).sum(dim=1)  # noqa: E731
    assert torch.all((ink(out) / ink(images) - 1).abs() < 0.3)


def test_the_generator_decides_the_distortions():
    x = torch.randn(8, 784)
    distort = Distort(shift=2, elastic=34.0)
    first = distort(x, torch.Generator().manual_seed(5))
    assert torch.equal(first, distort(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, distort(x, torch.Generator().manual_seed(6)))
    assert not Distort() and Distort(shift=1) and Distort(elastic=1.0)  # off unless asked


def test_dropout_is_a_layer_before_the_output_only_when_asked():
    plain, dropped = build_model("bmodel", 8), build_model("bmodel", 8, dropout=0.3)
    assert [n for n, _ in plain.named_children()] == ["fc1", "bn", "relu", "fc2"]
    assert [n for n, _ in dropped.named_children()] == ["fc1", "bn", "relu", "dropout", "fc2"]
    assert dropped.dropout.p == 0.3


def test_the_cosine_schedule_is_recorded_as_the_optimizer_applied_it(small_data):
    config = Config(model="nmodel", hidden_size=16, epochs=4, lr=0.01, schedule="cosine", train_size=500, device="cpu")
    record = run(config, data=subset(small_data, 500))
    assert [h["lr"] for h in record.history] == pytest.approx([0.01 * (1 + np.cos(np.pi * e / 4)) / 2
                                                                for e in range(4)])


def test_distorted_training_measures_validation_test_and_the_training_set_undistorted(small_data):
    config = Config(model="nmodel", hidden_size=32, epochs=2, train_size=1000, elastic=34.0, shift=2, device="cpu")
    data = subset(small_data, 1000)
    record = run(config, data=data)
    model_free = run(Config(**{**config.to_dict(), "elastic": 0.0, "shift": 0}), data=data)
    assert record.history[0]["train_loss"] != model_free.history[0]["train_loss"]
    assert record.dataset == {"name": "mnist", "test_labels": data.test_labels} and len(data.test_labels) == 64
    # In eval mode on the clean training images the distorted-trained network does better than on what it trained on.
    assert record.train_eval["acc"] > record.history[-1]["train_acc"]


def test_a_run_with_every_option_resumes_to_the_same_history(small_data, tmp_path, monkeypatch):
    """Dropout draws from torch's global generator, distortions from their own: the checkpoint keeps both."""
    import mnistlab.checkpoints as checkpoints_module

    config = Config(model="wmodel", hidden_size=16, epochs=3, train_size=500, dropout=0.3, shift=2, elastic=34.0,
                    schedule="cosine", device="cpu")
    data = subset(small_data, 500)
    straight = run(config, data=data)
    real = checkpoints_module.save

    def save_then_stop(*args):
        real(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints_module, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(config, data=data, checkpoint=tmp_path / "c.pt")
    monkeypatch.setattr(checkpoints_module, "save", real)
    torch.manual_seed(12345)  # whatever the global generator did since, the checkpoint's state is restored
    resumed = run(config, data=data, checkpoint=tmp_path / "c.pt")
    assert resumed.resumed_after_epoch == 1
    strip = lambda r: [{k: v for k, v in h.items() if k != "seconds"} for h in r.history]  # noqa: E731
    assert strip(resumed) == strip(straight) and resumed.predictions == straight.predictions
