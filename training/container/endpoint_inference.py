"""SageMaker serving entry point (``SAGEMAKER_PROGRAM``).

SageMaker serving entry point (``SAGEMAKER_PROGRAM``): the four handler functions the
PyTorch inference toolkit looks up on this module. The code is in ``dog_breeds.serving.inference``;
this file and the package beside it are the artifact's ``code/`` directory."""

from dog_breeds.serving.inference import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
