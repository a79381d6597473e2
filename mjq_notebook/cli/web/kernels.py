"""The kernels of ``mjq dashboard``'s pages, bounded: Voilà starts one per page load and, left
alone, keeps each for good (~65 MB, polling the database twice a second).

Loaded by name inside Voilà's process (``VoilaConfiguration.multi_kernel_manager_class``),
never imported by mjq itself. A kernel no page is connected to -- one whose page never opened
its websocket, or was closed -- is shut down once it has been alone for ``alone_grace``
seconds (the clock restarts while it runs the notebook, so a slow first render is not cut
short); past ``max_kernels`` a page load is answered 503 "too many open dashboards" instead
of starting another. Each kernel's role (the owner's or a viewer's page, as web/roles.py told
it) is kept, so a viewer can be kept out of an owner's kernel.
"""

from __future__ import annotations

import time
from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Integer

from ...core.audit import ROLE_ENV

TOO_MANY = "Too many open dashboards"


class BoundedKernelManager(AsyncMappingKernelManager):
    """Jupyter Server's kernel manager, with a cap and a watch on kernels left alone."""

    max_kernels = Integer(5, config=True, help="kernels (open pages) at most at once")
    alone_grace = Float(15.0, config=True, help="seconds a kernel no page uses is kept")
    check_every = Float(2.0, config=True, help="seconds between two looks at the kernels")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._alone_since: dict[str, float] = {}
        self._watch: PeriodicCallback | None = None
        self._roles: dict[str, str] = {}

    async def start_kernel(self, **kwargs: Any) -> str:  # type: ignore[override]  # jupyter_client types it sync; the async manager awaits it
        """A new kernel for a page, unless ``max_kernels`` run already (then 503)."""
        if kwargs.get("kernel_id") is None and len(self.list_kernel_ids()) >= self.max_kernels:
            raise web.HTTPError(503, reason=TOO_MANY)
        kernel_id = await super().start_kernel(**kwargs)
        self._roles[kernel_id] = (
            "owner" if (kwargs.get("env") or {}).get(ROLE_ENV) == "owner" else "viewer"
        )
        if self._watch is None:
            self._watch = PeriodicCallback(self._shut_alone, 1000 * self.check_every)
            self._watch.start()
        return kernel_id

    def role(self, kernel_id: str) -> str | None:
        """Whose page ``kernel_id`` was started for, "owner" or "viewer"; None if none runs."""
        return self._roles.get(kernel_id) if kernel_id in self else None

    async def _shut_alone(self) -> None:
        """Shut down each kernel that has had no page and no work for ``alone_grace`` s."""
        now = time.monotonic()
        kernels = set(self.list_kernel_ids())
        for kernel_id in set(self._alone_since) - kernels:
            del self._alone_since[kernel_id]
        for kernel_id in set(self._roles) - kernels:
            del self._roles[kernel_id]
        for kernel_id in kernels:
            kernel = self._kernels.get(kernel_id)
            working = getattr(kernel, "execution_state", "idle") not in ("idle", "dead")
            if self._kernel_connections.get(kernel_id, 0) > 0 or working:
                self._alone_since[kernel_id] = now
            elif now - self._alone_since.setdefault(kernel_id, now) >= self.alone_grace:
                self.log.info("mjq dashboard: shutting down kernel %s, no page uses it", kernel_id)
                self._alone_since.pop(kernel_id, None)
                await self.shutdown_kernel(kernel_id)
