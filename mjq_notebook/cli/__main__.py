"""``python -m mjq_notebook.cli``: the ``mjq`` command."""

import sys

from .main import main

sys.exit(main())
