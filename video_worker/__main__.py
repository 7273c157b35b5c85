"""``python -m video_worker``: the ``video-worker`` command."""

import sys

from video_worker.ops.cli import main

sys.exit(main())
