"""Live data with no widgets: one watcher per queue that follows its changes, the
subscriptions the views take on it, and what a window of jobs looks like now. Used by the
notebook's widgets and by ``mjq tail``.
"""
