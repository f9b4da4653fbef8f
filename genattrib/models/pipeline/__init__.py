"""The pipeline ``attribute()`` and ``estimate()`` share: prepare → generate → plan → run →
assemble (``stages.py``); ``estimate.py`` costs the plan instead of running it."""
