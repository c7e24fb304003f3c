"""Draw the open model's documentation figures (landmarks, expression components).

Run from the repository root::

    python docs/open_model_figures.py [--model PATH] [--output-dir docs/images]

Writes ``open_model_landmarks.png`` (the neutral mean face with its 68 landmark vertices and
the jaw contour candidates) and ``open_model_expressions.png`` (expression components 1-6 at
-2 and +2 sigma).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fitting.models import load_model  # noqa: E402
from synth.render import render_mesh, to_image  # noqa: E402

# iBUG-68 groups (0-based, end exclusive) and their colours.
LANDMARK_GROUPS = (("jaw", 0, 17, "tab:blue"), ("brows", 17, 27, "tab:orange"),
                   ("nose", 27, 36, "tab:green"), ("eyes", 36, 48, "tab:red"),
                   ("mouth", 48, 68, "tab:purple"))


def frontal_render(vertices, triangles, *, image_size=512, scale=2.1, yaw_degrees=0.0,
                   centre=None):
    """Render a model-space mesh with ``centre`` (default: its box centre) in the middle of a
    square image; returns (image, vertices_img)."""
    angle = np.deg2rad(yaw_degrees)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0],
                         [-np.sin(angle), 0, np.cos(angle)]])
    if centre is None:
        centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    half = (image_size - 1) / 2.0
    placed = to_image(vertices - centre, rotation=rotation, scale=scale,
                      translation=(half, half))
    rendering = render_mesh(placed, triangles, image_size=(image_size, image_size),
                            vertex_colors=np.tile([226.0, 188.0, 160.0], (len(vertices), 1)),
                            light_direction=(0.3, -0.4, 1.0), ambient=0.35)
    return rendering.image, placed


def landmark_figure(model, path: Path) -> None:
    image, placed = frontal_render(model.mean, model.triangles)
    figure, axis = plt.subplots(figsize=(7, 7), dpi=100)
    axis.imshow(image)
    contour = model.contour_candidates
    if contour is not None:
        for row in contour:
            row = row[row >= 0]
            axis.plot(placed[row, 0], placed[row, 1], ".", color="white", markersize=2)
    points = placed[model.landmark_indices]
    for name, start, stop, color in LANDMARK_GROUPS:
        axis.plot(points[start:stop, 0], points[start:stop, 1], "o", color=color,
                  markersize=3.5, label=name)
    for number, (x, y) in enumerate(points[:, :2]):
        axis.annotate(str(number), (x, y), xytext=(2, -2), textcoords="offset points",
                      fontsize=5, color="black")
    axis.legend(loc="lower right", fontsize=7)
    axis.set_title(f"{model.model_id}: mean face, 68 landmark vertices, jaw contour "
                   "candidates (white)", fontsize=8)
    axis.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def expression_figure(model, path: Path, *, num_components: int = 6,
                      sigma: float = 2.0) -> None:
    figure, axes = plt.subplots(2, num_components, figsize=(2.4 * num_components, 6), dpi=110)
    identity = np.zeros(model.identity_dim)
    centre = model.mean[model.landmark_indices].mean(axis=0) + [0.0, 12.0, 0.0]   # brows in
    for component in range(num_components):
        for row, sign in enumerate((-1.0, 1.0)):
            expression = np.zeros(model.expression_dim)
            expression[component] = sign * sigma
            image, _ = frontal_render(model.shape(identity, expression), model.triangles,
                                      image_size=300, scale=2.0, yaw_degrees=10.0,
                                      centre=centre)
            axis = axes[row, component]
            axis.imshow(image[10:290, 25:275])
            axis.set_title(f"exp {component + 1} at {sign * sigma:+.0f} sigma", fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="open", help="'open' or a model .npz")
    parser.add_argument("--output-dir", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    model = load_model(args.model)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    landmark_figure(model, args.output_dir / "open_model_landmarks.png")
    expression_figure(model, args.output_dir / "open_model_expressions.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
