"""The queue itself: ``JobQueue`` and the ``Job`` it hands out, the ``Worker`` that runs
them, the registry of workers, the catalog of a database's queues, the audit of who did what,
and what they share (outages, names, retried writes). Imports neither pandas nor ipywidgets.
"""
