"""The SageMaker endpoint offline: the runtime API over the serving container's toolkit.

The runtime API server (``runtime``) over the serving container (``container``), one worker
process per TorchServe worker (``worker``).
"""
