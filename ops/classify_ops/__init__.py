"""The stack's two operator commands, run from an operator's machine (not deployed):

    python -m classify_ops redrive --stack NAME      dead-letter queue -> upload queue
    python -m classify_ops reprocess --stack NAME    classify stored uploads again (new model)

Both find the stack's queues and table in its CloudFormation outputs, and both take
``--region``, ``--profile`` and ``--endpoint-url`` (the offline stack's moto server). Exit status:
0 done, 1 finished but not everything went through, 2 a usage, credential, permission or stack
problem (one line on stderr), 130 interrupted. ``cli`` parses; ``redrive`` and ``reprocess`` each
hold one command.
"""
