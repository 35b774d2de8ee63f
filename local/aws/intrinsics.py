"""CloudFormation's intrinsic functions, resolved against a deployed stack.

``Intrinsics`` resolves them, with the pseudo parameters (``pseudo_parameters``) and the
``Fn::GetAtt`` attributes moto's stack does not hand back (``attribute_reader``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class Intrinsics:
    """Resolves ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select`` and
    ``Fn::Split`` against the deployed stack: parameters to their values, resources to their
    physical ids, attributes through ``attribute(logical_id, name)``."""

    def __init__(
        self,
        parameters: Mapping[str, str],
        resources: Mapping[str, str],
        pseudo: Mapping[str, str],
        attribute: Callable[[str, str], str],
    ) -> None:
        self._refs = {**resources, **pseudo, **parameters}
        self._attribute = attribute

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref":
                return self._ref(arg)
            if name == "Fn::GetAtt":
                logical, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                return self._attribute(logical, attr)
            if name == "Fn::Sub":
                return self._sub(arg)
            if name == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self(parts))
            if name == "Fn::Select":
                index, items = self(arg)
                return items[int(index)]
            if name == "Fn::Split":
                separator, text = self(arg)
                return text.split(separator)
        return {k: self(v) for k, v in value.items()}

    def _ref(self, name: str) -> str:
        if name not in self._refs:
            raise KeyError(f"Ref {name!r}: not a parameter, resource or pseudo parameter")
        return self._refs[name]

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name.startswith("!"):  # ${!Literal} is the literal ${Literal}
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name and not name.startswith("AWS::"):  # ${Logical.Attribute}
                out.append(self._attribute(*name.split(".", 1)))
            else:
                out.append(str(self._ref(name)))
        out.append(rest)
        return "".join(out)


def pseudo_parameters(function_arn: str, stack_name: str, stack_id: str) -> dict[str, str]:
    _, partition, _, region, account, _ = function_arn.split(":", 5)
    return {
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::Partition": partition,
        "AWS::StackName": stack_name,
        "AWS::StackId": stack_id,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": "",
    }


def attribute_reader(
    clients: Callable[[str], Any], resources: Mapping[str, str], types: Mapping[str, str]
) -> Callable[[str, str], str]:
    """``Fn::GetAtt`` for the resource types this stack names in properties moto drops."""

    def attribute(logical_id: str, name: str) -> str:
        kind, physical = types.get(logical_id), resources.get(logical_id, "")
        if kind == "AWS::SQS::Queue":
            queue_name = physical.rstrip("/").rsplit("/", 1)[-1]
            sqs = clients("sqs")
            url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
            if name == "QueueUrl":
                return url
            if name == "QueueName":
                return queue_name
            if name == "Arn":
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                return attrs["Attributes"]["QueueArn"]
        if kind == "AWS::Lambda::Function" and name == "Arn":
            return clients("lambda").get_function_configuration(FunctionName=physical)[
                "FunctionArn"
            ]
        if kind == "AWS::S3::Bucket" and name == "Arn":
            return f"arn:aws:s3:::{physical}"
        if kind == "AWS::SNS::Topic" and name == "TopicArn":
            return physical
        raise KeyError(f"Fn::GetAtt {logical_id}.{name}: not resolvable offline ({kind})")

    return attribute
