"""``mjq_notebook.history``, where it was before the layers became folders: the history
loader, its DataFrame accessor and the timing summaries, now in ``analysis.history``."""

from .analysis.history import *  # noqa: F403
from .analysis.history import __all__  # noqa: F401
