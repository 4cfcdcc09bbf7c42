"""Stand-in for `google.colab.userdata`, Colab's secrets (the key icon in the left bar).

`get(name)` returns $REWARD_LAB_SIM_SECRET_<name>; without it, it raises `SecretNotFoundError` as Colab does
for a secret that was never added, so the kit's "no token" path runs.
"""

import os


class SecretNotFoundError(Exception):
    def __init__(self, key):
        super().__init__(f"Secret {key} does not exist.")


class NotebookAccessError(Exception):
    def __init__(self, key):
        super().__init__(f"Notebook does not have access to secret {key}")


def get(key):
    value = os.environ.get(f"REWARD_LAB_SIM_SECRET_{key}")
    if value is None:
        raise SecretNotFoundError(key)
    return value
