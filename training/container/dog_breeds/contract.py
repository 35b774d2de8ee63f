"""The endpoint's wire contract, defined once: what a client sends, what the model reads.

Torch-free and dependency-free, so the launchers, the offline stack and the benchmarks import it
beside the serving code. The function (``classify_upload``) ships alone to Lambda and keeps its own
copy of ``MAX_REQUEST_BYTES``; ``tests/unit/test_contract.py`` ties the two together.
"""

from __future__ import annotations

# InvokeEndpoint's request payload limit for a real-time endpoint (6 MiB): nothing larger can
# reach a real endpoint, and the function downscales anything larger before sending it.
MAX_REQUEST_BYTES = 6_291_456

# Raw image bodies; the bytes themselves decide the format (a PNG sent as image/jpeg still works).
IMAGE_CONTENT_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "application/x-image",
        "application/octet-stream",
    }
)
JSON_CONTENT_TYPE = "application/json"  # {"image": "<base64>", "top_k": 5}, and every answer

# ``top_k=5`` travels in this header with a raw image body (SageMaker passes it through).
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"

# Set on the SageMaker model (its environment) to choose how many worker processes TorchServe
# starts; unset, TorchServe starts one per vCPU.
MODEL_SERVER_WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"

# The normalisation every model here is trained and served with (torchvision's ImageNet weights').
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
