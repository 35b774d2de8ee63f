"""The Lambda function offline: built, run and invoked as on Lambda.

Built as ``sam build`` packs it (``build``), run in sandbox processes as Lambda runs it
(``runtime``, ``worker``), invoked by the queue's event source mapping (``event_source``).
"""
