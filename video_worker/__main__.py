import sys

from video_worker.cli import main

sys.exit(main())
