"""The launchers: run on your machine, drive SageMaker (``python -m training.launch STAGE``).

Never shipped into a job: the estimator's ``source_dir`` is ``training/container``.
"""
