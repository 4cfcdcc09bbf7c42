"""Blocker for the pip-installed kit in the Colab simulation (tests/colab_sim.py puts this folder on PYTHONPATH).

The test venv has the kit installed (editable, through a finder appended to sys.meta_path); on Colab it is not
installed, only cloned, and only the notebook kernel puts the clone on sys.path. PYTHONPATH entries are
searched before that finder, so any process of the simulation that did not insert the clone itself (a
`python -m helpers.score_cli` subprocess, say) fails here as it would on Colab.
"""

raise ModuleNotFoundError("No module named 'helpers' (Colab simulation: the kit is not installed; only the "
                          "notebook kernel puts the clone on sys.path)", name="helpers")
