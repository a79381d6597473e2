"""Live data with no widgets: one watcher per queue that follows its changes, the
subscriptions the views take on it, and what a window of jobs looks like now, used by the
notebook's widgets; and every job's changes as a log (``joblog``), used by ``mjq tail``.
"""
