"""``video-worker dev --demo``: a real 2D clip through the whole pipeline with ``MODEL=stereo``, checked.

Generates a 4 s 640x360 clip (a textured background, two objects at
different depths moving at different speeds, an AAC tone), cuts it at
keyframes into two segments as the upstream chunker would, uploads them
(``sbs``), waits for their completion rows, checks each output as reassembly
needs it (``models/stereo/verify.py``), joins them with FFmpeg's concat
demuxer, and writes a preview of one output frame.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

from video_worker.keys import build_output_segment_key
from video_worker.ops.provision import Resources
from video_worker.ops.submit import submit_segment
from video_worker.segments import s3_uri

JOB_ID = "demo-job"


def _wait_for_rows(ddb: Any, table: str, count: int, timeout: float) -> list[dict[str, Any]] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = ddb.query(TableName=table, KeyConditionExpression="job_id = :j", ConsistentRead=True,
                          ExpressionAttributeValues={":j": {"S": JOB_ID}})["Items"]
        if len(items) >= count:
            return sorted(items, key=lambda item: int(item["segment_index"]["N"]))
        time.sleep(0.2)
    return None


def run_demo(s3: Any, ddb: Any, res: Resources, scratch: Path, timeout: float) -> int:
    from video_worker.models.stereo.chunks import concat, split_at_keyframes
    from video_worker.models.stereo.preview import write_png
    from video_worker.models.stereo.synthetic import write_clip
    from video_worker.models.stereo.verify import problems, read_streams

    clip = scratch / "demo-2d.mp4"
    write_clip(clip, seconds=4.0, width=640, height=360, fps=25, audio=True, gop=50, seed=7)
    segments = split_at_keyframes(clip, scratch / "segments", seconds=2.0)
    started = time.monotonic()
    for index, path in enumerate(segments):
        uri = submit_segment(s3, res.input_bucket, path, job_id=JOB_ID, index=index, total=len(segments), mode="sbs")
        print(f"uploaded {uri} ({path.stat().st_size} bytes, 2D {read_streams(path).size[0]}x360)", flush=True)
    rows = _wait_for_rows(ddb, res.table, len(segments), timeout)
    elapsed = time.monotonic() - started
    if rows is None:
        print(f"demo: no completion rows for {JOB_ID} after {timeout:.0f}s", file=sys.stderr)
        return 1
    outputs, frames, failed = [], 0, False
    for index, src in enumerate(segments):
        key = build_output_segment_key(JOB_ID, index)
        out = scratch / f"output-{index}.mp4"
        s3.download_file(res.output_bucket, key, str(out))
        count, wrong = problems(src, out, "sbs")
        frames += count
        outputs.append(out)
        failed |= bool(wrong)
        print(f"output {s3_uri(res.output_bucket, key)}: {count} frames, sbs {read_streams(out).size[0]}x360, "
              f"{'checks passed' if not wrong else 'PROBLEMS: ' + '; '.join(wrong)}", flush=True)
    joined = concat(outputs, scratch / "joined.mp4")
    joined_pts = read_streams(joined).pts
    monotonic = all(b > a for a, b in itertools.pairwise(joined_pts))
    failed |= len(joined_pts) != frames or not monotonic
    preview = scratch / "preview-sbs.png"
    write_png(_frame(outputs[0], frames // 4), preview)
    fingerprint = rows[0].get("model_fingerprint", {}).get("S", "?")
    print(f"joined with the concat demuxer: {len(joined_pts)} frames, timestamps "
          f"{'monotonic' if monotonic else 'NOT monotonic'} ({joined})", flush=True)
    print(f"demo: {len(segments)} segments, {frames} frames converted in {elapsed:.1f}s "
          f"({frames / elapsed:.1f} frames/s end to end, model {rows[0].get('model', {}).get('S', '?')} "
          f"{fingerprint}); preview {preview}", flush=True)
    return 1 if failed else 0


def _frame(path: Path, index: int) -> Any:
    import av
    import numpy as np

    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return np.asarray(frame.to_ndarray(format="rgb24"))
    raise IndexError(index)
