"""``make parity``: the SageMaker runtimes reproduced on this machine.

``make parity``: the SageMaker training and serving runtimes reproduced on this machine
(``envs``), with the real code run in them (``training``, ``serving``), from what the launchers
would send to AWS (``dry_run``). Run as ``python -m local.parity``; not part of ``make test``."""
