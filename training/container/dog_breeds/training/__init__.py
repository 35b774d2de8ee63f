"""Training in the SageMaker training container: the loop, checkpoints, Debugger, metrics."""
