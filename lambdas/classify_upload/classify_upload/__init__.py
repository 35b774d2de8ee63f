"""The function ``classify_upload``: one uploaded image -> the endpoint -> one table item.

``handler.lambda_handler`` is the entry (template.yaml's ``Handler``); it is thin over plain
modules that know nothing of Lambda: ``classify`` (one notification -> an item per object, step by
step), ``events`` (which records are ours), ``images`` (fit the request), ``endpoint`` (invoke,
retry), ``table`` (the item, newest-wins), ``errors`` (the failure taxonomy and every error code's
class), ``clients`` (the AWS clients) and ``settings`` (the environment's configuration).
"""
