"""The endpoint's wire contract is defined once (``dog_breeds.contract``); the function, which
ships alone to Lambda, keeps its own copy of the request limit, tied to it here."""

from __future__ import annotations

from classify_upload import images
from dog_breeds import contract
from dog_breeds.serving import image_decode, inference, preprocess, runtimes


def test_the_function_sends_at_most_what_the_endpoint_takes():
    assert images.MAX_REQUEST_BYTES == contract.MAX_REQUEST_BYTES == image_decode.MAX_BODY_BYTES


def test_the_serving_code_reads_the_contract_not_a_copy():
    assert inference.IMAGE_CONTENT_TYPES is contract.IMAGE_CONTENT_TYPES
    assert inference.CUSTOM_ATTRIBUTES_HEADER is contract.CUSTOM_ATTRIBUTES_HEADER
    assert runtimes.MODEL_SERVER_WORKERS_ENV is contract.MODEL_SERVER_WORKERS_ENV
    assert preprocess.IMAGENET_MEAN is contract.IMAGENET_MEAN
    assert preprocess.IMAGENET_STD is contract.IMAGENET_STD
