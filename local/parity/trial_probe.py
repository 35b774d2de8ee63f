"""Read the Debugger output back as a rule job would.

Run by the training reproduction's own interpreter (not the development venv's): read the
Debugger output back as a rule job would, with ``smdebug.trials.create_trial``.

    python trial_probe.py TENSORS_DIR TENSOR_NAME

Prints one JSON line: the tensor's steps per mode and the collections the hook saved.
"""

import json
import sys

from smdebug import modes
from smdebug.trials import create_trial


def main(out_dir: str, tensor_name: str) -> None:
    trial = create_trial(out_dir)
    tensor = trial.tensor(tensor_name)
    steps = {mode: tensor.steps(mode=getattr(modes, mode)) for mode in ("TRAIN", "EVAL", "PREDICT")}
    print(json.dumps({"loss_steps": steps, "collections": sorted(trial.collections())}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
