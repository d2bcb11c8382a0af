"""Stand-ins for the ComfyUI modules a node pack imports, for tests without a ComfyUI checkout.

``install()`` puts this directory first on ``sys.path`` so ``import comfy.utils``,
``import folder_paths`` and ``from comfy_api.latest import io`` resolve here. It refuses to run
when a real ComfyUI was already imported into the process (mixing the two would test nothing).
"""

from __future__ import annotations

import os
import sys

STUB_ROOT = os.path.dirname(os.path.abspath(__file__))
STUB_MODULES = ("comfy", "comfy_api", "folder_paths")


def install() -> None:
    for name in STUB_MODULES:
        module = sys.modules.get(name)
        if module is not None and not os.path.abspath(getattr(module, "__file__", "") or "").startswith(STUB_ROOT):
            raise RuntimeError(
                f"a real {name!r} ({module.__file__}) is already imported; the node tests need the stubs in "
                f"{STUB_ROOT}. Run them in a process without ComfyUI on sys.path."
            )
    if STUB_ROOT not in sys.path:
        sys.path.insert(0, STUB_ROOT)
