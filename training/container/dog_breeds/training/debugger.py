"""SageMaker Debugger (smdebug) hook for the training loop: on when asked for or configured.

Every function takes the hook or None, so the loop reads the same with the hook off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from torch import nn

log = logging.getLogger("train")

SMDEBUG_CONFIG_ENV = "SMDEBUG_CONFIG_FILE_PATH"
SMDEBUG_DEFAULT_CONFIG = "/opt/ml/input/config/debughookconfig.json"


def create_debug_hook(smdebug_dir: Path | None):
    """An smdebug hook when asked for (``--smdebug-dir``) or configured by SageMaker; else None."""
    config_path = os.environ.get(SMDEBUG_CONFIG_ENV, SMDEBUG_DEFAULT_CONFIG)
    if smdebug_dir is None and not Path(config_path).is_file():
        log.info("smdebug hook off: no --smdebug-dir and no %s", config_path)
        return None
    # smdebug logs every registered parameter at INFO to stdout, which carries the metric lines.
    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
    try:
        import smdebug.pytorch as smd
    except ImportError as exc:
        log.warning("smdebug hook off: smdebug is not importable (%s)", exc)
        return None
    if smdebug_dir is not None:
        hook = smd.Hook(
            out_dir=str(smdebug_dir),
            save_config=smd.SaveConfig(save_interval=1),
            include_collections=[smd.CollectionKeys.LOSSES],
        )
    else:
        hook = smd.Hook.create_from_json_file()
    log.info("smdebug hook on: writing to %s", hook.out_dir)
    return hook


def register(hook, model: nn.Module, loss_fn: nn.Module) -> None:
    """Let the hook record the model's tensors and the loss."""
    if hook is not None:
        hook.register_module(model)
        hook.register_loss(loss_fn)


def set_hook_mode(hook, mode_name: str) -> None:
    """Tag what follows as smdebug's ``TRAIN``, ``EVAL`` or ``PREDICT`` steps."""
    if hook is not None:
        import smdebug.pytorch as smd

        hook.set_mode(getattr(smd.modes, mode_name))


def close(hook) -> None:
    if hook is not None:
        hook.close()


def out_dir(hook) -> str | None:
    """Where the hook writes, for the summary; None with the hook off."""
    return str(hook.out_dir) if hook is not None else None
