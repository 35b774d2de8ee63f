"""SageMaker training entry point (``entry_point="train.py"``, ``source_dir`` this folder).

    python training/container/train.py --data-dir dogImages --model-dir model --epochs 10

SageMaker runs it from ``/opt/ml/code`` with the hyperparameters as ``--name value`` flags; the
work is in ``dog_breeds.training.trainer``.
"""

import faulthandler
import logging
import sys

from dog_breeds.training.trainer import cli

if __name__ == "__main__":
    # A native crash prints every thread's Python stack to the job's log, not a bare exit 139.
    faulthandler.enable()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cli(sys.argv[1:])
