"""Acting as another local user of the machine (uid nobody), to show what such a user can
and cannot reach."""

from __future__ import annotations

import pwd
import subprocess
import sys

NOBODY = pwd.getpwnam("nobody")

# Drops this Python process for good to uid nobody: real, effective and saved ids, and no
# supplementary groups. Code run through ``as_nobody`` imports what it needs first (the
# venv's Python lives under /root, which nobody may not enter), then calls drop_to_nobody().
DROP_TO_NOBODY = f"""
import os
import pwd
import encodings.idna  # noqa: F401  (imported lazily by socket code: not after the drop)

def drop_to_nobody():
    os.setgroups([])
    os.setgid({NOBODY.pw_gid})
    os.setuid({NOBODY.pw_uid})
    assert os.getresuid() == ({NOBODY.pw_uid},) * 3 and os.getresgid() == ({NOBODY.pw_gid},) * 3
"""


def as_nobody(code: str, *args: str, env=None, wait: bool = True, timeout: float = 60):
    """Run ``python -c code args`` in a child that calls ``drop_to_nobody()`` when it is ready
    to act as another local user of the machine. ``wait``: the CompletedProcess (stdout,
    stderr as text); else the running Popen."""
    command = [sys.executable, "-c", DROP_TO_NOBODY + code, *args]
    if not wait:
        return subprocess.Popen(command, cwd="/", env=env, stdin=subprocess.DEVNULL)
    return subprocess.run(
        command, cwd="/", env=env, capture_output=True, text=True, timeout=timeout
    )
