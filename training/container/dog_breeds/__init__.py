"""The dog-breed model: the code SageMaker runs, in its training and its serving containers.

``train.py`` and ``endpoint_inference.py`` beside this package are the entry points; SageMaker
runs them from ``/opt/ml/code`` (training) and ``/opt/ml/model/code`` (serving), so this package
imports there as it does in the repository's venv.

- ``data``      the dogImages folder layout, transforms, loaders; a generated stand-in set
- ``model``     ResNet50 + the two-layer head
- ``training``  the training loop, checkpoints, Debugger hook, metric lines
- ``artifact``  what ``model.tar.gz`` holds, and the serving ``code/`` directory
- ``serving``   decode, preprocess, the CPU runtimes, and the four inference functions
"""
