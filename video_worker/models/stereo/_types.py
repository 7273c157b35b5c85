"""Array type aliases shared by the modules (OpenCV's stubs return loosely typed arrays; we cast at the call)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
