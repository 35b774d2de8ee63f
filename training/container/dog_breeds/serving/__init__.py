"""Serving in the SageMaker PyTorch inference container: decode, preprocess, runtimes, handlers."""
