"""Cut a clip at keyframes by stream copy (as the upstream chunker does) and join segments with FFmpeg's concat
demuxer (as reassembly does): for the demo, the tests and the benchmarks."""

from __future__ import annotations

from bisect import bisect_right
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

import av

# split_at_keyframes is what an upstream chunker does (no re-encode); concat is what downstream does with FFmpeg's
# concat demuxer (which silently misbehaves when segments differ in codec parameters).


def _keyframe_cuts(src: Path, seconds: float) -> list[tuple[int, Fraction]]:
    """(decode-order index, pts in seconds) of the video keyframes that start a segment (one per ``seconds``)."""
    cuts: list[tuple[int, Fraction]] = []
    next_cut = 0.0
    with av.open(str(src)) as inp:
        video = inp.streams.video[0]
        tb = Fraction(video.time_base or 1)
        index = 0
        for packet in inp.demux(video):
            if packet.size == 0:  # the demuxer's end-of-stream packet (a real packet may have no DTS)
                continue
            if packet.is_keyframe and packet.pts is not None and float(packet.pts * tb) >= next_cut - 1e-9:
                cuts.append((index, packet.pts * tb))
                next_cut = float(packet.pts * tb) + seconds
            index += 1
    return cuts


def split_at_keyframes(src: Path, out_dir: Path, seconds: float, reset_timestamps: bool = True) -> list[Path]:
    """Cut ``src`` into segments of at least ``seconds``, each starting at a video keyframe, by stream copy.

    Audio packets go to the segment whose time span holds their pts. With ``reset_timestamps`` every segment's
    timestamps start at its first keyframe's pts (as FFmpeg's segment muxer with ``-reset_timestamps 1``).
    """
    cuts = _keyframe_cuts(src, seconds)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"segment_{i:03d}.mp4" for i in range(len(cuts))]
    with ExitStack() as stack, av.open(str(src)) as inp:
        video = inp.streams.video[0]
        audio = list(inp.streams.audio)
        outs = [stack.enter_context(av.open(str(p), "w", format="mp4")) for p in paths]
        streams = [{s.index: o.add_stream_from_template(s) for s in [video, *audio]} for o in outs]
        starts = [t for _, t in cuts]
        first_packets = {i: n for n, (i, _) in enumerate(cuts)}
        segment, index = 0, 0
        for packet in inp.demux([video, *audio]):
            if packet.size == 0:  # the demuxer's end-of-stream packet (a real packet may have no DTS)
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if packet.stream.index == video.index:
                segment = first_packets.get(index, segment)
                index += 1
                target = segment
            elif stamp is None:  # an audio packet with no timestamp at all: with the video around it
                target = segment
            else:
                t = stamp * Fraction(packet.stream.time_base or 1)
                target = max(0, bisect_right(starts, t) - 1)
            _route(packet, outs[target], streams[target], starts[target] if reset_timestamps else None)
    return paths


def _route(packet: av.Packet[av.stream.Stream], out: av.container.OutputContainer, streams: dict[int, av.stream.Stream],
           start: Fraction | None) -> None:
    tb = Fraction(packet.stream.time_base or 1)
    if start is not None:
        offset = round(start / tb)
        packet.pts = packet.pts - offset if packet.pts is not None else None
        packet.dts = packet.dts - offset if packet.dts is not None else None
    packet.stream = streams[packet.stream.index]
    out.mux(packet)


def concat(segments: list[Path], dst: Path) -> Path:
    """Join ``segments`` with FFmpeg's concat demuxer into ``dst`` by stream copy (as downstream does)."""
    listing = dst.with_suffix(".txt")
    listing.write_text("".join(f"file '{p.resolve()}'\n" for p in segments))
    with (
        av.open(str(listing), format="concat", options={"safe": "0"}) as inp,
        av.open(str(dst), "w", format="mp4") as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux(list(inp.streams)):
            if packet.size == 0 or packet.stream.index not in streams:  # end of stream, or a stream not kept
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst
