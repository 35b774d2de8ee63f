"""The network, its freezing rules, and the dataset conventions it is trained on."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models

from dog_breeds.data import folders
from dog_breeds.data.synthetic import main as synthetic_main
from dog_breeds.model import network


def trainable_prefixes(model: nn.Module) -> set[str]:
    return {
        name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad
    }  # backbone.<stage>....


@pytest.fixture(scope="module")
def model() -> network.DogBreedNet:
    return network.build_model(5, hidden_size=32, dropout=0.1, pretrained=False)


def test_head_is_two_fully_connected_layers_to_the_classes(model):
    linears = [m for m in model.backbone.fc.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 32), (32, 5)]
    assert any(isinstance(m, nn.Dropout) and m.p == 0.1 for m in model.backbone.fc.modules())
    assert model.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


def test_from_random_init_the_whole_network_trains(model):
    trainable, total = network.count_parameters(model)
    assert trainable == total


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (0, {"fc"}),
        (1, {"fc", "layer4"}),
        (2, {"fc", "layer4", "layer3"}),
        (4, {"fc", "layer4", "layer3", "layer2", "layer1"}),
    ],
)
def test_frozen_backbone_unfreezes_the_top_stages(stages, expected):
    model = network.build_model(3, hidden_size=16)
    network.configure_trainable(model, freeze_backbone=True, unfreeze_stages=stages)
    assert trainable_prefixes(model) == expected


def test_unfreeze_stages_out_of_range_is_rejected():
    model = network.build_model(3, hidden_size=16)
    with pytest.raises(ValueError, match="unfreeze_stages"):
        network.configure_trainable(model, freeze_backbone=True, unfreeze_stages=5)


def test_frozen_batchnorm_keeps_its_running_statistics():
    model = network.build_model(3, hidden_size=16)
    network.configure_trainable(model, freeze_backbone=True, unfreeze_stages=1)
    model.train()
    assert not model.backbone.bn1.training and not model.backbone.layer3[0].bn1.training
    assert model.backbone.layer4[0].bn1.training  # unfrozen stage trains normally
    before = model.backbone.bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, model.backbone.bn1.running_mean)


def test_pretrained_asks_torchvision_for_imagenet_v2_weights_and_freezes(monkeypatch):
    requested = []
    real_resnet50 = models.resnet50

    def fake_resnet50(weights=None):
        requested.append(weights)
        return real_resnet50(weights=None)  # offline: the shape without the download

    monkeypatch.setattr(network.models, "resnet50", fake_resnet50)
    model = network.build_model(4, pretrained=True, unfreeze_stages=1)
    assert requested == [models.ResNet50_Weights.IMAGENET1K_V2]
    assert trainable_prefixes(model) == {"fc", "layer4"}


def test_class_names_drop_the_numeric_prefix():
    assert folders.class_name("001.Affenpinscher") == "Affenpinscher"
    assert folders.class_name("133.Yorkshire_terrier") == "Yorkshire_terrier"
    assert folders.class_name("Beagle") == "Beagle"


def test_class_weights_are_inverse_frequency():
    weights = folders.class_weights([0, 0, 0, 1], 2)
    assert weights.tolist() == pytest.approx([4 / 6, 2.0])
    # a class missing from train keeps weight 1 rather than dividing by zero
    assert folders.class_weights([0, 1], 3).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_splits_share_the_train_class_order(tiny_dataset):
    splits = folders.load_splits(tiny_dataset, 64)
    assert splits.classes == ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (96, 24, 24)
    image, label = splits.test[0]
    assert image.shape == (3, 64, 64) and label == 0


def test_a_valid_class_unknown_to_train_is_an_error(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / split / "001.A").mkdir(parents=True)
    (tmp_path / "valid" / "002.B").mkdir()
    with pytest.raises(ValueError, match=r"002\.B"):
        folders.load_splits(tmp_path, 32)


def test_synthetic_dataset_cli_writes_the_dogimages_layout(tmp_path, capsys):
    root = synthetic_main(
        [str(tmp_path / "d"), "--classes", "3", "--per-class", "2", "1", "1", "--image-size", "24"]
    )
    assert capsys.readouterr().out.strip() == str(root)
    assert sorted(p.name for p in (root / "train").iterdir()) == [
        "001.Affenpinscher",
        "002.Afghan_hound",
        "003.Airedale_terrier",
    ]
    assert len(list(root.glob("train/*/*.jpg"))) == 6
    assert len(list(root.glob("test/*/*.jpg"))) == 3


def test_a_lone_last_training_image_is_dropped_not_batchnormed():
    """BatchNorm in train mode cannot normalise a batch of one image."""
    from torch.utils.data import TensorDataset

    def batches(n: int) -> list[int]:
        data = TensorDataset(torch.zeros(n, 1), torch.zeros(n))
        return [len(x) for x, _ in folders.make_loader(data, 16, shuffle=True, num_workers=0)]

    assert batches(17) == [16]
    assert batches(18) == [16, 2]


# ---------------------------------------------------------------------------- ImageNet weights
def _no_download(monkeypatch, error: Exception) -> list[str]:
    """torchvision's download, made to fail as it does offline; returns the URLs it was asked."""
    asked: list[str] = []

    def download(url, *args, **kwargs):
        asked.append(url)
        raise error

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return asked


def test_pretrained_loads_imagenet_weights_through_torchvision_cache(monkeypatch, tmp_path):
    """The real torchvision API: the file it caches under $TORCH_HOME is what gets loaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    asked = _no_download(monkeypatch, AssertionError("a cached file must not be downloaded"))
    cached = network.cached_weights_path()
    assert cached == tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    cached.parent.mkdir(parents=True)
    imagenet = models.resnet50().state_dict()  # stands in for the real IMAGENET1K_V2 file
    torch.save(imagenet, cached)

    model = network.build_model(4, hidden_size=16, pretrained=True, unfreeze_stages=1)
    assert asked == []
    assert torch.equal(model.backbone.conv1.weight, imagenet["conv1.weight"])
    assert torch.equal(model.backbone.layer4[2].conv3.weight, imagenet["layer4.2.conv3.weight"])
    assert model.backbone.fc[-1].out_features == 4  # the head is ours, not ImageNet's
    assert trainable_prefixes(model) == {"fc", "layer4"}


def test_pretrained_offline_is_one_clear_error(monkeypatch, tmp_path):
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    asked = _no_download(monkeypatch, URLError(OSError(101, "Network is unreachable")))
    with pytest.raises(network.PretrainedWeightsUnavailable) as err:
        network.build_model(4, pretrained=True)
    assert asked == [models.ResNet50_Weights.IMAGENET1K_V2.url]
    message = str(err.value)
    assert "\n" not in message
    assert "cannot download the ImageNet weights" in message
    assert "Network is unreachable" in message
    assert str(network.cached_weights_path()) in message
    assert message.endswith("or train from random init with --pretrained false")


def test_corrupt_cached_weights_say_which_file_to_delete(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = network.cached_weights_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(network.PretrainedWeightsUnavailable, match="delete it") as err:
        network.build_model(4, pretrained=True)
    assert str(cached) in str(err.value) and "\n" not in str(err.value)


def test_unfreeze_stages_is_checked_before_any_download(monkeypatch):
    def resnet50(weights=None):
        raise AssertionError("must not build (and download) first")

    monkeypatch.setattr(network.models, "resnet50", resnet50)
    with pytest.raises(ValueError, match=r"unfreeze_stages must be 0\.\.4"):
        network.build_model(4, pretrained=True, unfreeze_stages=5)


# ---------------------------------------------------------------------------- dataset images
def _exif_rotated_jpeg() -> bytes:
    """Stored 60x30, left half red, right half blue; EXIF says: show it turned 90° clockwise."""
    import io

    from PIL import Image

    image = Image.new("RGB", (60, 30), (220, 20, 20))
    image.paste((20, 20, 220), (30, 0, 60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()[:-150]


def _layout(root, files: dict[str, bytes]):
    for split in ("train", "valid", "test"):
        folder = root / split / "001.Beagle"
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return root


def test_a_truncated_training_jpeg_trains_and_the_endpoint_still_rejects_one(tmp_path):
    """dogImages holds JPEGs cut short: training reads what is there instead of dying hours in,
    without turning on Pillow's process-wide LOAD_TRUNCATED_IMAGES that the endpoint relies on."""
    from dog_breeds.serving import image_decode

    truncated = _truncated_jpeg()
    splits = folders.load_splits(_layout(tmp_path, {"cut.jpg": truncated}), 32)
    image, label = splits.train[0]
    assert image.shape == (3, 32, 32) and label == 0
    with pytest.raises(image_decode.BadImage, match="truncated"):
        image_decode.decode_image(truncated)


def test_training_sees_a_photo_the_way_up_the_endpoint_does(tmp_path):
    from dog_breeds.serving import image_decode, preprocess

    body = _exif_rotated_jpeg()
    splits = folders.load_splits(_layout(tmp_path, {"rotated.jpg": body}), 32)
    served = preprocess.to_model_input(
        image_decode.decode_image(body), 32, folders.IMAGENET_MEAN, folders.IMAGENET_STD
    )
    trained, _ = splits.valid[0]  # the deterministic (eval) transform
    assert torch.allclose(trained, torch.from_numpy(served))
