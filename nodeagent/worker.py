"""One dedicated thread for every Datapath call.

bcc map and ring-buffer objects are not thread-safe and every datapath call blocks (compile,
map syscalls, netlink), so the agent funnels all of them through a single-thread executor:
the asyncio loop never blocks and the datapath never sees two threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Worker:
    def __init__(self, name: str = "datapath") -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(*args)`` on the datapath thread and awaits its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
