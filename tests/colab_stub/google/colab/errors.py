"""Stand-in for `google.colab.errors` (huggingface_hub imports `Error` from it before reading a Colab secret)."""


class Error(Exception):
    """Base class of Colab's own errors."""
