"""AWS on loopback: moto, the template deployed into it, and what moto lacks.

``template.yaml`` is deployed into moto as ``sam deploy`` would (``deploy``, by way of
``translate``, ``package``, ``intrinsics`` and ``moto_fixups``); what moto lacks is added to its
server in-process (``moto_s3_events``, ``moto_sqs_move``, ``moto_sagemaker``).
"""
