"""bench.depth_data: the KITTI Velodyne projection and the sparse downscale (synthetic inputs, no mirrors)."""

from __future__ import annotations

import numpy as np

from bench.depth_data import _fit_width, _kitti_velodyne_depth, _shrink_sparse

CALIB = b"""P2: 100 0 50 0 0 100 20 0 0 0 1 0
R0_rect: 1 0 0 0 1 0 0 0 1
Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0
"""
"""A camera looking along the scanner's x axis (f = 100 px, centre (50, 20)), no offset between the two."""


def _scan(*points: tuple[float, float, float]) -> bytes:
    return np.array([(*p, 0.5) for p in points], np.float32).tobytes()


def test_points_land_on_their_pixel_with_their_distance_the_nearest_winning() -> None:
    depth = _kitti_velodyne_depth(_scan((10, 0, 0), (20, 0, 0), (10, -1, 0.5), (-5, 0, 0), (10, 30, 0)), CALIB,
                                  (40, 100))
    assert depth[20, 50] == 10.0  # two points on the centre pixel: the nearer one
    assert depth[15, 60] == 10.0  # y = -1 m (right), z = +0.5 m (up) at 10 m: 10 px right, 5 px up
    assert np.count_nonzero(depth) == 2  # the point behind the scanner and the one outside the image are dropped


def test_sparse_shrink_keeps_every_point_and_the_nearest_of_a_block() -> None:
    depth = np.zeros((40, 100), np.float32)
    depth[0, 0], depth[1, 1], depth[39, 99], depth[20, 51] = 5.0, 3.0, 7.0, 9.0
    small = _shrink_sparse(depth, (20, 50))
    assert small[0, 0] == 3.0 and small[19, 49] == 7.0 and small[10, 25] == 9.0
    assert np.count_nonzero(small) == 3
    rgb = np.zeros((40, 1280, 3), np.uint8)
    sparse = np.zeros((40, 1280), np.float32)
    sparse[::7, ::3] = 4.0
    _, fitted = _fit_width(rgb, sparse, sparse=True)
    _, nearest = _fit_width(rgb, sparse)
    assert fitted.shape == (20, 640) and np.count_nonzero(fitted) > np.count_nonzero(nearest)
