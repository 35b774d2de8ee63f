"""The endpoint script's four functions, called as the serving toolkit calls them."""

from __future__ import annotations

import base64
import io
import json
import warnings

import bad_images
import numpy as np
import pytest
import torch
from PIL import Image
from sagemaker_inference.errors import GenericInferenceToolkitError

from dog_breeds.artifact import store
from dog_breeds.data.folders import eval_transform
from dog_breeds.serving import image_decode
from dog_breeds.serving import inference as ei


class FakeContext:
    """What TorchServe hands input_fn as its third argument: per-request headers."""

    def __init__(self, headers):
        processor = type("P", (), {"get_request_properties": lambda self: headers})()
        self.request_processor = [processor]


@pytest.fixture(scope="module")
def served(trained_artifact):
    return ei.model_fn(str(trained_artifact))


@pytest.fixture(scope="module")
def test_images(tiny_dataset):
    return sorted((tiny_dataset / "test").glob("*/*.jpg"))


def classify(served, body, content_type="image/jpeg", accept="application/json", context=None):
    data = ei.input_fn(body, content_type, context)
    body_out, content_type_out = ei.output_fn(ei.predict_fn(data, served), accept)
    assert content_type_out == "application/json"
    return json.loads(body_out)


def test_round_trip_top1_equals_the_in_memory_model(served, trained_artifact, test_images):
    model = store.build_from_artifact(trained_artifact)
    config = store.load_config(trained_artifact)
    transform = eval_transform(config["image_size"], config["mean"], config["std"])
    classes = store.load_classes(trained_artifact)
    agree, correct = 0, 0
    for path in test_images:
        with Image.open(path) as image, torch.no_grad():
            expected = int(model(transform(image.convert("RGB"))[None]).argmax(1))
        result = classify(served, path.read_bytes())
        agree += result["predictions"][0]["index"] == expected
        correct += result["predictions"][0]["breed"] == path.parent.name.split(".", 1)[1]
        assert result["predictions"][0]["breed"] == classes[result["predictions"][0]["index"]]
    assert agree == len(test_images)
    assert correct / len(test_images) >= 0.9


def test_response_lists_top_k_best_first_with_the_model_identity(served, test_images):
    result = classify(served, test_images[0].read_bytes())
    probabilities = [p["probability"] for p in result["predictions"]]
    assert result["top_k"] == len(result["predictions"]) == 4  # default 5, only 4 classes
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-6)
    assert set(result["predictions"][0]) == {"breed", "index", "probability"}
    model = result["model"]
    assert model["name"] == "dog-breeds-resnet50" and len(model["version"]) == 12
    assert model["runtime"] in ("openvino-int8", "openvino", "pytorch")


def test_json_request_with_base64_image_and_top_k(served, test_images):
    raw = test_images[0].read_bytes()
    body = json.dumps({"image": base64.b64encode(raw).decode(), "top_k": 2})
    result = classify(served, body, "application/json")
    assert result["top_k"] == 2 and len(result["predictions"]) == 2
    assert result["predictions"][0] == classify(served, raw)["predictions"][0]


def test_top_k_from_custom_attributes_header(served, test_images):
    context = FakeContext({"X-Amzn-SageMaker-Custom-Attributes": "trace=abc, top_k=1"})
    result = classify(served, test_images[0].read_bytes(), context=context)
    assert result["top_k"] == 1 and len(result["predictions"]) == 1


def test_json_top_k_wins_over_the_header(served, test_images):
    body = json.dumps({"image": base64.b64encode(test_images[0].read_bytes()).decode(), "top_k": 3})
    context = FakeContext({"x-amzn-sagemaker-custom-attributes": "top_k=1"})
    assert classify(served, body, "application/json", context=context)["top_k"] == 3


@pytest.mark.parametrize("value", ["top_k=0", "top_k=many", "top_k=-2"])
def test_bad_top_k_in_the_header_is_a_400(value):
    with pytest.raises(GenericInferenceToolkitError) as err:
        ei.parse_custom_attributes(value)
    assert err.value.status_code == 400


def test_unsupported_accept_is_a_406(served, test_images):
    with pytest.raises(GenericInferenceToolkitError) as err:
        classify(served, test_images[0].read_bytes(), accept="text/csv")
    assert err.value.status_code == 406


@pytest.mark.parametrize("case", bad_images.bad_requests(), ids=lambda c: c.name)
def test_bad_input_is_a_clear_4xx(case):
    with pytest.raises(GenericInferenceToolkitError) as err:
        ei.input_fn(case.body, case.content_type)
    assert err.value.status_code == case.status
    assert case.reason in err.value.message


# ---------------------------------------------------------------------------- images that decode
def decoded_pixels(body: bytes) -> np.ndarray:
    image = ei.input_fn(body, "application/x-image").image
    assert image.mode == "RGB"
    return np.asarray(image)


def test_cmyk_jpeg_becomes_rgb():
    body = bad_images.encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG")
    red = decoded_pixels(body)[16, 16]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_16_bit_grayscale_png_is_scaled_not_clipped():
    gray = Image.fromarray(np.full((16, 16), 32896, dtype=np.uint16), "I;16")
    pixels = decoded_pixels(bad_images.encode(gray, "PNG"))
    assert pixels[0, 0].tolist() == [128, 128, 128]  # clipping would give white


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_composite_on_white(mode):
    image = Image.new(mode, (16, 16), (0, 0) if mode == "LA" else (0, 0, 0, 0))
    image.putpixel((0, 0), (0, 255) if mode == "LA" else (0, 0, 0, 255))
    pixels = decoded_pixels(bad_images.encode(image, "PNG"))
    assert pixels[8, 8].tolist() == [255, 255, 255]
    assert pixels[0, 0].tolist() == [0, 0, 0]


def test_palette_png_with_transparency_composites_on_white():
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    pixels = decoded_pixels(bad_images.encode(image, "PNG", transparency=0))
    assert pixels[8, 8].tolist() == [255, 255, 255] and pixels[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    body = bad_images.jpeg_bytes((60, 30), exif=exif.tobytes())
    assert decoded_pixels(body).shape == (60, 30, 3)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    pixel = decoded_pixels(buf.getvalue())[8, 8]
    assert pixel[0] > 200 and pixel[2] < 60


def test_webp_and_a_png_labelled_jpeg_decode():
    image = Image.new("RGB", (20, 20), (10, 200, 10))
    for body in (bad_images.encode(image, "WEBP"), bad_images.encode(image, "PNG")):
        assert decoded_pixels(body)[10, 10][1] > 150


def test_pillow_bomb_warning_becomes_a_413(monkeypatch):
    """Between Pillow's limit and twice it, Pillow only warns: the endpoint makes it an error."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    body = bad_images.encode(Image.new("RGB", (40, 40)), "PNG")  # 1600 px: a warning, not an error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what a default process would do
        with pytest.raises(image_decode.BadImage) as err:
            image_decode.decode_image(body)
    assert err.value.status == 413


def test_model_fn_lowers_pillows_pixel_limit(served):
    assert Image.MAX_IMAGE_PIXELS == image_decode.MAX_IMAGE_PIXELS


# ---------------------------------------------------------------------------- top_k bounds
@pytest.mark.parametrize("top_k", [0, -1, 2.5, True, "many", [3], {"k": 3}])
def test_a_json_top_k_that_is_not_a_positive_integer_is_a_400(test_images, top_k):
    body = json.dumps({"image": base64.b64encode(test_images[0].read_bytes()).decode(),
                       "top_k": top_k})  # fmt: skip
    with pytest.raises(GenericInferenceToolkitError) as err:
        ei.input_fn(body, "application/json")
    assert err.value.status_code == 400 and "top_k must be a positive integer" in err.value.message


def test_a_top_k_beyond_the_classes_lists_every_class_once(served, test_images):
    body = json.dumps({"image": base64.b64encode(test_images[0].read_bytes()).decode(),
                       "top_k": 10**9})  # fmt: skip
    result = classify(served, body, "application/json")
    assert result["top_k"] == 4
    assert sorted(p["index"] for p in result["predictions"]) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------- artifact round trip
def test_a_model_in_memory_and_its_saved_artifact_answer_alike(tmp_path, test_images):
    """save_artifact -> model_fn -> input_fn -> predict_fn -> output_fn gives what the model in
    memory gives, without train.py's arguments (config.json rebuilds the network)."""
    from dog_breeds.data import folders
    from dog_breeds.model import network

    torch.manual_seed(1)
    model = network.build_model(4, hidden_size=24, dropout=0.2).eval()
    with torch.no_grad():  # BatchNorm statistics as a trained network has them, not the defaults
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    classes = ["Beagle", "Boxer", "Collie", "Dachshund"]
    store.save_artifact(
        model, tmp_path, classes, hidden_size=24, dropout=0.2, image_size=48,
        mean=folders.IMAGENET_MEAN, std=folders.IMAGENET_STD,
    )  # fmt: skip
    served = ei.model_fn(str(tmp_path))
    transform = eval_transform(48)
    for path in test_images[:6]:
        with Image.open(path) as image, torch.no_grad():
            expected = torch.softmax(model(transform(image.convert("RGB"))[None]).double(), 1)[0]
        ranked = expected.argsort(descending=True).tolist()
        result = classify(served, path.read_bytes())
        assert [p["index"] for p in result["predictions"]] == ranked
        assert [p["probability"] for p in result["predictions"]] == pytest.approx(
            [float(expected[i]) for i in ranked], abs=1e-5
        )
        assert result["predictions"][0]["breed"] == classes[ranked[0]]
