"""SAM → CloudFormation: ``template.yaml`` read and translated as the SAM transform does it.

The SAM template is translated by ``aws-sam-translator`` (the library behind the transform) with
an empty managed-policy map, so names, environment variables, policies and limits come from the
real template, not from a second description of it. ``template_parameters`` gives every
parameter's deployed value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The SAM template as a dict, short-form intrinsics (``!Sub``) in their long form."""
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(Path(path).read_text(encoding="utf-8"))


def translate(template: dict[str, Any], parameters: Mapping[str, Any], region: str) -> dict:
    """SAM → CloudFormation with ``aws-sam-translator``, no IAM lookups (empty policy map)."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import (
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    fragment = copy.deepcopy(template)
    values = dict(parameters)
    to_py27_compatible_template(fragment, values)
    # The translator only asks the session for its region (pseudo parameters).
    translator = Translator(None, Parser(), boto_session=SimpleNamespace(region_name=region))
    translated = translator.translate(
        fragment, parameter_values=values, get_managed_policy_map=dict
    )
    return undo_mark_unicode_str_in_template(translated)


def template_parameters(translated: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Every parameter's deployed value: the one given, else the template's default."""
    values = {
        name: str(spec["Default"])
        for name, spec in translated.get("Parameters", {}).items()
        if "Default" in spec
    }
    values.update({k: str(v) for k, v in given.items()})
    return values
