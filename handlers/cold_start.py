"""The garbage collector, paused while a cold start imports: importing this module pauses it,
imports_done() freezes what the imports made and turns it back on.

The imports allocate some 60,000 objects that live as long as the process (modules, classes, the
pydantic schemas of the routes); as they pile up the collector scans them again and again (about
30 ms of a 0.3 s import: docs/performance.md). Frozen (gc.freeze), they are never scanned again,
which is the pattern Python's documentation gives for objects a process keeps for good. The
garbage the imports leave in cycles (some 800 small objects, about 0.2 MB) is frozen with them,
once: nothing grows from it.
"""

from __future__ import annotations

import gc

gc.disable()


def imports_done() -> None:
    """Freeze every object made so far and turn the collector back on."""
    gc.freeze()
    gc.enable()
