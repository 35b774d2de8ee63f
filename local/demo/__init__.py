"""The demo: ``python -m local demo``, end to end on one machine.

The command (``command``), the small default model it trains (``default_model``), and the uploads
and their scoring (``uploads``).
"""
