"""The ``mjq`` command: its arguments, its commands, ``mjq tail`` and ``mjq demo``."""
