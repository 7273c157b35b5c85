"""Real photographs with ground-truth depth for ``bench.depth_quality``, extracted from public Git repositories.

``python -m bench.depth_data --out DIR [--mirrors /work/.mirror] [--only committable|external|all]`` reads each
source file from a local bare mirror of its repository (``MIRRORS/owner+name/repo``, as the ``fetch`` tool leaves
them) at the pinned commit, and writes per sample ``NAME.png`` (RGB, at most 640 px wide, area-downscaled) and
``NAME.npy`` (float32 metric depth in metres at the same size, nearest-neighbour resized, 0 = invalid), plus
``samples.json`` (scene, GT kind, source, licence of every sample). ``SAMPLES`` below is the manifest: the
committable ones are in ``bench/data/depth/`` (see ``SOURCES.md`` there); the others carry non-commercial or
unstated licences and are rebuilt outside the repository (``EXTERNAL.md``).
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
MAX_WIDTH = 640

OPEN3D = ("Acidburn0zzz/Open3D", "e4315a8033dc9e28386fc34d4896d9bb0a3bf91b", "MIT (repository)")
SLAMBOOK2 = ("gaoxiang12/slambook2", "e62d9cd1f95bab337fb4251608543b71d004c420", "MIT (repository)")
KARSCH = ("kevinkarsch/depth-transfer", "0351ffcade5e9b90e10cf378325a4051295757a6",
          "Microsoft Research licence, non-commercial (repository)")
KITTI_VIS = ("kuixu/kitti_object_vis", "12ce0a2348f6e1405c502bf32e51d76d3a970396", "MIT (repository)")
KITTI_VELO2CAM = ("Lsy-1997/kitti-velo2cam", "7546fa6f86ae206ade5e7eb1cdbe5c9b8f4c2787",
                  "MIT (repository, a fork of azureology/kitti-velo2cam)")
KITTI_LICENCE = "KITTI: CC BY-NC-SA 3.0 (Geiger, Lenz, Urtasun, CVPR 2012)"
TUM_LICENCE = "CC BY 4.0 (TUM RGB-D benchmark, Sturm et al., IROS 2012)"


@dataclass(frozen=True)
class Sample:
    """One photograph and its ground truth: where they are and how the GT file encodes metres."""

    name: str
    scene: str  # indoor | outdoor
    repo: str
    commit: str
    rgb: str
    gt: str
    gt_format: str  # tum5000 | mm | nyu_raw | sun | make3d | kitti_velodyne
    dataset: str
    licence: str
    committable: bool
    calib: str = ""  # kitti_velodyne: the KITTI object-benchmark calibration file (P2, R0_rect, Tr_velo_to_cam)


def _tum(name: str, repo: tuple[str, str, str], rgb: str, gt: str, sequence: str) -> Sample:
    return Sample(name, "indoor", repo[0], repo[1], rgb, gt, "tum5000", f"TUM RGB-D {sequence}",
                  f"{TUM_LICENCE}; {repo[2]}", True)


def _make3d(stem: str) -> Sample:
    base = "depth-transfer/examples/sample_training_data"
    return Sample(f"make3d-{stem}", "outdoor", KARSCH[0], KARSCH[1], f"{base}/img-{stem}.jpg",
                  f"{base}/depth_sph_corr-{stem}.mat", "make3d", "Make3D Laser+Image (Saxena et al.)",
                  f"Make3D: research use, no licence stated; {KARSCH[2]}", False)


def _kitti(name: str, repo: tuple[str, str, str], rgb: str, velodyne: str, calib: str) -> Sample:
    return Sample(name, "outdoor", repo[0], repo[1], rgb, velodyne, "kitti_velodyne",
                  "KITTI 3D object (Velodyne HDL-64E scan projected into image_2)",
                  f"{KITTI_LICENCE}; {repo[2]}", False, calib)


SAMPLES: tuple[Sample, ...] = (
    _tum("tum-open3d", OPEN3D, "examples/TestData/RGBD/other_formats/TUM_color.png",
         "examples/TestData/RGBD/other_formats/TUM_depth.png", "(sequence not stated)"),
    _tum("tum-fr1desk-1", SLAMBOOK2, "ch7/1.png", "ch7/1_depth.png", "freiburg1_desk"),
    _tum("tum-fr1desk-2", SLAMBOOK2, "ch7/2.png", "ch7/2_depth.png", "freiburg1_desk"),
    Sample("nyu-open3d", "indoor", OPEN3D[0], OPEN3D[1], "examples/TestData/RGBD/other_formats/NYU_color.ppm",
           "examples/TestData/RGBD/other_formats/NYU_depth.pgm", "nyu_raw", "NYU Depth v2 (raw Kinect frame)",
           f"NYU Depth v2: no licence stated; {OPEN3D[2]}", False),
    Sample("sun-open3d", "indoor", OPEN3D[0], OPEN3D[1], "examples/TestData/RGBD/other_formats/SUN_color.jpg",
           "examples/TestData/RGBD/other_formats/SUN_depth.png", "sun", "SUN RGB-D",
           f"SUN RGB-D: no licence stated; {OPEN3D[2]}", False),
    *(Sample(f"slambook-room-{i}", "indoor", SLAMBOOK2[0], SLAMBOOK2[1], f"ch5/rgbd/color/{i}.png",
             f"ch5/rgbd/depth/{i}.pgm", "mm", "slambook2 ch5 RGB-D sample (Kinect, origin not stated)",
             f"data origin and licence not stated; {SLAMBOOK2[2]}", False) for i in (1, 3, 5)),
    *(_make3d(stem) for stem in ("060705-17.10.14-p-254t000", "060705-17.35.48-p-049t000", "op10-p-313t000",
                                 "op31-p-220t000", "op36-p-077t000", "op36-p-343t000", "op57-p-283t000")),
    *(_kitti(f"kitti-train-{i:06d}", KITTI_VIS, f"data/object/training/image_2/{i:06d}.png",
             f"data/object/training/velodyne/{i:06d}.bin", f"data/object/training/calib/{i:06d}.txt")
      for i in range(3)),
    # The repository holds one calibration file copied for all eight test frames (the 2011_09_26 one, the frame
    # 000007's own): the frames are 1242x375, that day's size, and the projected scans line up with poles, cars
    # and tree trunks.
    *(_kitti(f"kitti-test-{i:06d}", KITTI_VELO2CAM, f"data_object_image_2/testing/image_2/{i:06d}.png",
             f"data_object_velodyne/testing/velodyne/{i:06d}.bin", f"testing/calib/{i:06d}.txt")
      for i in range(8)),
)
"""The manifest: 8 indoor (3 committable TUM frames), 18 outdoor (7 Make3D, laser range; 11 KITTI, Velodyne)."""


def _git_blob(mirrors: Path, repo: str, commit: str, path: str) -> bytes:
    git_dir = mirrors / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True,
                          capture_output=True).stdout


def _image(blob: bytes, flags: int) -> npt.NDArray[np.integer[Any]]:
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), flags)
    if img is None:
        raise ValueError("not an image")
    return np.asarray(img)


def _make3d_depth(blob: bytes) -> F32:
    """Position3DGrid(:, :, 4) of a MATLAB v5 file holding one compressed double array (55 rows x 305 columns)."""
    data = zlib.decompress(blob[136:])  # 128-byte header, then one miCOMPRESSED element
    pos, fields = 8, list[bytes]()
    while len(fields) < 4:  # array flags, dimensions, name, real part
        kind, size = struct.unpack("<II", data[pos:pos + 8])
        if kind >> 16:  # small data element: 4-byte tag, data packed in the next 4 bytes
            fields.append(data[pos + 4:pos + 4 + (kind >> 16)])
            pos += 8
        else:
            fields.append(data[pos + 8:pos + 8 + size])
            pos += 8 + (size + 7) // 8 * 8
    dims = tuple(int(d) for d in np.frombuffer(fields[1], np.int32))
    grid = np.frombuffer(fields[3], np.float64).reshape(dims, order="F")
    return grid[:, :, 3].astype(np.float32)


def _kitti_calib(text: str) -> dict[str, npt.NDArray[np.float64]]:
    """The matrices of a KITTI object-benchmark calibration file (``KEY: v v v ...`` per line)."""
    mats = {}
    for line in text.splitlines():
        key, _, values = line.partition(":")
        if values.strip():
            mats[key.strip()] = np.array([float(v) for v in values.split()], np.float64)
    return mats


def _kitti_velodyne_depth(blob: bytes, calib: bytes, shape: tuple[int, int]) -> F32:
    """One Velodyne HDL-64E scan (float32 x, y, z, reflectance) projected into the left colour camera (image_2).

    x_img = P2 · R0_rect · Tr_velo_to_cam · x_velo, as the KITTI object devkit does; depth = the rectified camera's z
    (metres). Where several points fall on one pixel the nearest is kept; pixels without a point are 0.
    """
    mats = _kitti_calib(calib.decode())
    p2 = mats["P2"].reshape(3, 4)
    r0 = np.eye(4)
    r0[:3, :3] = mats["R0_rect"].reshape(3, 3)
    tr = np.vstack([mats["Tr_velo_to_cam"].reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    pts = np.frombuffer(blob, np.float32).reshape(-1, 4).astype(np.float64)
    pts = pts[pts[:, 0] > 0.5]  # in front of the scanner
    homo = np.hstack([pts[:, :3], np.ones((len(pts), 1))])
    img = (p2 @ r0 @ tr @ homo.T).T
    z = img[:, 2]
    front = z > 0.5
    u = np.round(img[front, 0] / z[front]).astype(np.intp)
    v = np.round(img[front, 1] / z[front]).astype(np.intp)
    z = z[front]
    h, w = shape
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    depth = np.full(shape, np.inf)
    np.minimum.at(depth, (v[inside], u[inside]), z[inside])
    depth[~np.isfinite(depth)] = 0.0
    return depth.astype(np.float32)


SPARSE = ("kitti_velodyne",)
"""Scattered-point GT formats: downscaled by keeping the nearest valid point per pixel (``_shrink_sparse``)."""


def _depth_metres(blob: bytes, gt_format: str, calib: bytes = b"", shape: tuple[int, int] = (0, 0)) -> F32:
    """The GT file's depth in metres, 0 where invalid (``calib`` and the image ``shape`` for LiDAR scans)."""
    if gt_format == "kitti_velodyne":
        return _kitti_velodyne_depth(blob, calib, shape)
    if gt_format == "make3d":
        depth = _make3d_depth(blob)
        depth[depth >= 70.0] = 0.0  # the laser saturates at 80 m; the usual Make3D protocol keeps < 70 m
        return depth
    raw = _image(blob, cv2.IMREAD_UNCHANGED).astype(np.uint16)
    if gt_format == "tum5000":
        return (raw.astype(np.float32) / 5000.0).astype(np.float32)
    if gt_format == "mm":
        return (raw.astype(np.float32) / 1000.0).astype(np.float32)
    if gt_format == "sun":  # SUN RGB-D stores depth in mm rotated by 3 bits (as Open3D's reader undoes it)
        rotated = ((raw >> 3) | (raw << 13)).astype(np.uint16)
        depth = rotated.astype(np.float32) / 1000.0
        depth[depth > 10.0] = 0.0
        return depth.astype(np.float32)
    if gt_format == "nyu_raw":  # raw Kinect disparity units, byte-swapped in the PGM (Open3D's reader swaps too)
        raw = raw.byteswap()
        metres = 351.3 / (1092.5 - raw.astype(np.float32))  # the NYU toolbox's conversion
        metres[(metres <= 0.0) | (metres > 10.0) | (raw >= 2047)] = 0.0
        return metres.astype(np.float32)
    raise ValueError(f"unknown GT format {gt_format}")


def _shrink_sparse(depth: F32, shape: tuple[int, int]) -> F32:
    """A sparse map scaled down to ``shape``: every valid pixel lands on its target pixel, the nearest one wins.

    (Nearest-neighbour resizing would drop most of a LiDAR scan's points when shrinking.)
    """
    h, w = depth.shape
    ys, xs = np.nonzero(depth > 0)
    ty = np.minimum(((ys + 0.5) * shape[0] / h).astype(np.intp), shape[0] - 1)
    tx = np.minimum(((xs + 0.5) * shape[1] / w).astype(np.intp), shape[1] - 1)
    out = np.full(shape, np.inf)
    np.minimum.at(out, (ty, tx), depth[ys, xs].astype(np.float64))
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)


def _fit_width(rgb: npt.NDArray[np.uint8], depth: F32, sparse: bool = False) -> tuple[npt.NDArray[np.uint8], F32]:
    h, w = rgb.shape[:2]
    if w > MAX_WIDTH:
        size = (MAX_WIDTH, round(h * MAX_WIDTH / w))
        rgb = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)
    size = (rgb.shape[1], rgb.shape[0])
    if depth.shape != rgb.shape[:2]:
        if sparse and depth.shape[0] >= size[1] and depth.shape[1] >= size[0]:
            depth = _shrink_sparse(depth, (size[1], size[0]))
        else:
            depth = np.asarray(cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST), np.float32)
    return rgb, depth


def extract(mirrors: Path, out: Path, keep: Callable[[Sample], bool]) -> list[Sample]:
    """Write the kept samples into ``out`` (PNG + NPY + samples.json); return them."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for s in SAMPLES:
        if not keep(s):
            continue
        bgr = _image(_git_blob(mirrors, s.repo, s.commit, s.rgb), cv2.IMREAD_COLOR)
        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
        calib = _git_blob(mirrors, s.repo, s.commit, s.calib) if s.calib else b""
        gt = _depth_metres(_git_blob(mirrors, s.repo, s.commit, s.gt), s.gt_format, calib, rgb.shape[:2])
        rgb, depth = _fit_width(rgb, gt, sparse=s.gt_format in SPARSE)
        cv2.imwrite(str(out / f"{s.name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        np.save(out / f"{s.name}.npy", depth)
        written.append(s)
    manifest = [{"name": s.name, "scene": s.scene, "gt": "depth", "source": asdict(s)} for s in written]
    (out / "samples.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--only", choices=("committable", "external", "all"), default="all")
    args = ap.parse_args(argv)
    keep: dict[str, Callable[[Sample], bool]] = {
        "committable": lambda s: s.committable, "external": lambda s: not s.committable, "all": lambda s: True}
    for s in extract(args.mirrors, args.out, keep[args.only]):
        print(f"{s.scene:8} {s.name:32} {s.dataset}")


if __name__ == "__main__":
    main()
