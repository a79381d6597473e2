"""The analysis layer: finished jobs as data.

``history`` loads a queue's history into pandas (and the ``df.mjq`` accessor) from what
``fetch`` reads from MongoDB, ``timing`` summarises waits and runs and writes durations,
``plots`` draws them with matplotlib (``figure``: the figure that shows itself in a notebook;
``ticks``: round duration axes), and ``stats`` computes the same summaries inside MongoDB. It
imports the core and the server layer, never the notebook layer above it, except through the
lazy one-liners named in the import-linter contract (pyproject.toml).
"""
