"""Stand-in for Colab's `google.colab` package, used by tests/colab_sim.py (never installed).

Only what the course and its libraries touch: `drive.mount`, `userdata.get`, `errors.Error`. `google/` has no
`__init__.py` on purpose: it is a namespace package, so `google.protobuf` (tensorboard needs it) is still found in
site-packages.
"""

from google.colab import drive, errors, userdata  # noqa: F401  (real Colab imports its submodules eagerly too)
