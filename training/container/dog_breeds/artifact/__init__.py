"""The model artifact (model.tar.gz) and the serving container's code/ directory.

Kept free of torch at import: the launchers stage code/ without loading the model code.
"""
