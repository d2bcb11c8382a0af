"""Test stand-in for ``comfy.utils``: the global progress hook and ProgressBar.

As in ComfyUI, a ProgressBar captures the hook that is installed when it is created and calls
``hook(value, total, preview, node_id=...)`` on every update; the server's hook also raises
``InterruptProcessingException`` when an interrupt is pending (the test harness installs a hook
that does the same, see ``tests/node_harness.py``).
"""

from __future__ import annotations

PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK = None


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
