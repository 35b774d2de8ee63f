"""Everything that makes the endpoint.

Everything that makes the endpoint. ``container/`` runs inside SageMaker (it is the
estimator's ``source_dir``); ``launch`` runs on your machine and drives SageMaker
(``python -m training.launch STAGE``).
"""
