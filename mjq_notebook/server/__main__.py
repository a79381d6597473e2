"""``python -m mjq_notebook.server --path DIR``: run the shared embedded server of a folder."""

import sys

from .daemon import main

sys.exit(main())
