"""The software renderer: coverage, z-buffer visibility, Lambert shading, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from synth.render import Rendering, render_mesh, to_image, visible_vertices

SIZE = (64, 48)                      # width, height


def square(x0, y0, x1, y1, z):
    """Two triangles covering an axis-aligned square at depth z (image coordinates)."""
    vertices = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float)
    return vertices, np.array([[0, 1, 2], [0, 2, 3]])


def cube(centre, half, rotation):
    """Vertices (8, 3) and triangles (12, 3) of a cube in image coordinates."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    faces = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    triangles = np.array([tri for a, b, c, d in faces for tri in ((a, b, c), (a, c, d))])
    return centre + half * corners @ rotation.T, triangles


def test_front_square_occludes_back_square():
    back_vertices, back_triangles = square(5, 5, 40, 40, z=0.0)
    front_vertices, front_triangles = square(20, 10, 50, 30, z=10.0)
    # The front square is listed first and the back one last: order must not matter.
    vertices = np.vstack([front_vertices, back_vertices])
    triangles = np.vstack([front_triangles, back_triangles + 4])
    rendering = render_mesh(vertices, triangles, image_size=SIZE, shading="flat")
    front = rendering.triangle_id[20, 30]
    back = rendering.triangle_id[35, 10]
    assert front in (0, 1) and back in (2, 3)
    assert rendering.depth[20, 30] == pytest.approx(10.0)
    assert rendering.depth[35, 10] == pytest.approx(0.0)
    # Pixel centres are integer coordinates: the front square covers columns 20..50 and
    # rows 10..30 inclusive, on top of the back square wherever they overlap.
    covered_by_front = np.isin(rendering.triangle_id, (0, 1))
    assert covered_by_front.sum() == 31 * 21
    assert not rendering.mask[0, 0] and rendering.depth[0, 0] == -np.inf


def test_triangle_coverage_matches_its_area():
    vertices = np.array([[3.3, 2.7, 0.0], [60.2, 9.1, 0.0], [17.8, 44.6, 0.0]])
    rendering = render_mesh(vertices, np.array([[0, 1, 2]]), image_size=SIZE)
    edge1, edge2 = vertices[1] - vertices[0], vertices[2] - vertices[0]
    area = abs(edge1[0] * edge2[1] - edge1[1] * edge2[0]) / 2
    perimeter = sum(np.linalg.norm(vertices[i] - vertices[(i + 1) % 3]) for i in range(3))
    # Pixel-centre sampling errs by at most about half a pixel along each edge.
    assert abs(rendering.mask.sum() - area) <= perimeter / 2


@pytest.mark.parametrize("shading", ["flat", "smooth"])
@pytest.mark.parametrize("ambient", [0.0, 0.3])
def test_lit_plane_has_the_lambert_value(shading, ambient):
    # The plane z = y tan(tilt) (image axes: y down, z near) has the unit normal
    # (0, -sin(tilt), cos(tilt)): it faces up and towards the camera.
    tilt = np.deg2rad(35.0)
    vertices, triangles = square(8, 8, 56, 40, z=0.0)
    vertices[:, 2] = vertices[:, 1] * np.tan(tilt)
    light = np.array([0.2, -0.5, 1.0])
    albedo = np.array([200.0, 150.0, 100.0])
    rendering = render_mesh(vertices, triangles, image_size=SIZE, shading=shading,
                            vertex_colors=np.tile(albedo, (4, 1)), light_direction=light,
                            ambient=ambient)
    normal = np.array([0.0, -np.sin(tilt), np.cos(tilt)])
    lambert = max(normal @ light / np.linalg.norm(light), 0.0)
    expected = np.rint(albedo * (ambient + (1 - ambient) * lambert))
    inner = rendering.image[12:36, 12:52].reshape(-1, 3).astype(float)
    # Every interior pixel has the exact value: rounding to uint8 is the only error.
    np.testing.assert_array_equal(inner, np.broadcast_to(expected, inner.shape))
    assert rendering.mask[12:36, 12:52].all()


def test_per_triangle_colours_and_background():
    vertices, triangles = square(10, 10, 40, 40, z=0.0)
    colors = np.array([[255.0, 0.0, 0.0], [0.0, 0.0, 255.0]])
    rendering = render_mesh(vertices, triangles, image_size=SIZE, triangle_colors=colors,
                            ambient=1.0, background=(1, 2, 3))
    # Triangle 0 is above the 0-2 diagonal (x > y), triangle 1 below it; ambient 1 = albedo.
    assert tuple(rendering.image[15, 35]) == (255, 0, 0)
    assert tuple(rendering.image[35, 15]) == (0, 0, 255)
    assert tuple(rendering.image[45, 60]) == (1, 2, 3)


def test_cube_visibility_and_depth():
    angle = np.deg2rad(30.0)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0],
                         [-np.sin(angle), 0, np.cos(angle)]])
    vertices, triangles = cube(np.array([32.0, 24.0, 0.0]), 12.0, rotation)
    rendering = render_mesh(vertices, triangles, image_size=SIZE)
    visible = visible_vertices(vertices, triangles, rendering)
    # Seen from +z, a cube turned about the vertical axis shows the 6 corners of its two
    # nearer side faces; the 2 far corners are hidden behind them.
    order = np.argsort(vertices[:, 2])
    assert not visible[order[:2]].any()
    assert visible[order[2:]].all()
    # Depth at the image of the nearest corner equals that corner's depth.
    nearest = order[-1]
    col, row = np.rint(vertices[nearest, :2]).astype(int)
    assert rendering.depth[row, col] == pytest.approx(vertices[nearest, 2], abs=0.5)


def test_rendering_is_deterministic_and_noise_is_seeded():
    vertices, triangles = cube(np.array([32.0, 24.0, 0.0]), 12.0, np.eye(3))
    first = render_mesh(vertices, triangles, image_size=SIZE, noise_std=5.0, seed=3)
    second = render_mesh(vertices, triangles, image_size=SIZE, noise_std=5.0, seed=3)
    other = render_mesh(vertices, triangles, image_size=SIZE, noise_std=5.0, seed=4)
    clean = render_mesh(vertices, triangles, image_size=SIZE)
    assert first.image.tobytes() == second.image.tobytes()
    np.testing.assert_array_equal(first.triangle_id, second.triangle_id)
    assert first.image.tobytes() != other.image.tobytes()
    # Noise of std 5 grey levels: the mean absolute change is about 0.8 * 5 = 4.
    change = np.abs(first.image.astype(float) - clean.image).mean()
    assert 3.0 < change < 5.0


def test_to_image_flips_y_and_keeps_nearer_points_larger():
    points = np.array([[0.0, 0.0, 0.0], [10.0, 20.0, 5.0]])
    placed = to_image(points, rotation=np.eye(3), scale=2.0, translation=(100.0, 50.0))
    np.testing.assert_allclose(placed, [[100.0, 50.0, 0.0], [120.0, 10.0, 10.0]])


def test_bad_shapes_raise_value_errors():
    vertices, triangles = square(0, 0, 10, 10, z=0.0)
    with pytest.raises(ValueError, match=r"vertices_img must be \(V, 3\)"):
        render_mesh(vertices[:, :2], triangles, image_size=SIZE)
    with pytest.raises(ValueError, match=r"triangles must be \(T, 3\)"):
        render_mesh(vertices, triangles[:, :2], image_size=SIZE)
    with pytest.raises(ValueError, match="index vertices"):
        render_mesh(vertices, triangles + 2, image_size=SIZE)
    with pytest.raises(ValueError, match=r"vertex_colors must be \(4, 3\)"):
        render_mesh(vertices, triangles, image_size=SIZE, vertex_colors=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"points must be \(N, 3\)"):
        to_image(vertices[:, :2], rotation=np.eye(3), scale=1.0, translation=(0, 0))


def test_open_model_render_is_found_by_dlib():
    pytest.importorskip("dlib")
    from fitting.landmarks.dlib_backend import DlibLandmarker
    from fitting.models import load_model
    from fitting.models.build.landmark_placement import render_view
    from fitting.models.build.open_model import FRONTAL_VIEW

    model = load_model("open")
    rendering, placed, _ = render_view(model.mean, model.triangles, np.zeros((0, 3)),
                                       np.zeros((0, 3), int), yaw_degrees=FRONTAL_VIEW[0],
                                       scale=FRONTAL_VIEW[1])
    assert isinstance(rendering, Rendering)
    found = DlibLandmarker(upsample=0).detect(rendering.image)
    assert len(found.faces) == 1
    face = found.faces[0]
    x0, y0, x1, y1 = face.box
    # dlib's box stops above the chin: on the photos in examples/faces the chin point lies
    # 0.01-0.22 box widths below it, so "inside" allows a quarter of the width.
    margin = 0.25 * (x1 - x0)
    points = face.landmarks
    assert np.all((points[:, 0] > x0 - margin) & (points[:, 0] < x1 + margin))
    assert np.all((points[:, 1] > y0 - margin) & (points[:, 1] < y1 + margin))
    # Detected points lie near the projections of the model's own landmark vertices: the
    # landmarks were placed from such detections (averaged over views, mirror-symmetrised).
    error = np.linalg.norm(points - placed[model.landmark_indices, :2], axis=1)
    assert np.median(error) < 0.03 * (x1 - x0)
