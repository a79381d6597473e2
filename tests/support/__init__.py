"""What the tests share besides fixtures (those are in tests/conftest.py): helpers grouped by
idea, the payloads, and the programs the tests run in other processes (``handlers.py`` for
``mjq work``, ``pymjq_driver.py`` for the real pymjq). A test module imports from here, never
from another test module."""
