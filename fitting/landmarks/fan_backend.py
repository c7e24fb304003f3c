"""2D-FAN (Bulat & Tzimiropoulos, ICCV 2017) 68-point landmarks, batched across images.

The network is face-alignment's ``FAN`` with its 2DFAN4 state dict, loaded by the same call
face-alignment 1.5 makes (``torch.load(..., weights_only=True)`` then ``load_state_dict``), but
from a file that must already be on disk: nothing here downloads. Face boxes come from dlib's
HOG detector (the :class:`DlibLandmarker`'s own) or from face-alignment's S3FD.

face-alignment batches crops only within one image; here the face crops of every image of a
:meth:`FanLandmarker.detect_batch` call go through the network together. Crops are made by
face-alignment's ``crop`` with its centre and scale rule, so the network sees what it was
trained on. torch and face-alignment are imported inside methods: ``import fitting`` never
imports torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import numpy as np

from fitting.landmarks.faces import Face, ImageFaces, check_rgb_image
from fitting.models.model import NUM_LANDMARKS

WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"
SFD_WEIGHTS_FILE = "s3fd-619a316812.pth"
FACE_DETECTORS = ("dlib", "sfd")

# face-alignment's crop geometry (face_alignment/utils.py): crops are CROP_RESOLUTION square,
# heatmaps HEATMAP_RESOLUTION square, the crop side is SCALE_FACTOR * scale source pixels with
# scale = (box width + box height) / REFERENCE_SCALE, and the centre is raised by
# CENTER_Y_OFFSET of the box height.
CROP_RESOLUTION = 256
HEATMAP_RESOLUTION = 64
SCALE_FACTOR = 200.0
REFERENCE_SCALE = 195.0
CENTER_Y_OFFSET = 0.12


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder, ``$TORCH_HOME/hub/checkpoints`` by default."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def crop_geometry(boxes: np.ndarray, *,
                  reference_scale: float = REFERENCE_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """face-alignment's crop centre and scale of face boxes.

    Parameters
    ----------
    boxes : (F, 4) float   ``x0, y0, x1, y1`` in source pixels
    reference_scale : float
        Box ``width + height`` that maps to scale 1 (195 for S3FD and dlib boxes).

    Returns
    -------
    centers : (F, 2) float64   crop centres in source pixels
    scales : (F,) float64      the crop side is ``200 * scale`` source pixels
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected (F, 4) boxes, got {boxes.shape}")
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    centers = np.stack([boxes[:, 2] - width / 2.0,
                        boxes[:, 3] - height / 2.0 - height * CENTER_Y_OFFSET], axis=1)
    return centers, (width + height) / reference_scale


def decode_heatmaps(heatmaps: np.ndarray, centers: np.ndarray,
                    scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks in source pixels from FAN heatmaps, as face-alignment decodes them.

    The arg-max of each heatmap, moved a quarter cell towards its larger neighbour (as in
    face-alignment's ``get_preds_fromhm``), is mapped back through the crop. Unlike
    face-alignment, the mapping keeps sub-pixel precision (it truncates to integers) and is
    vectorised (its numba version costs several seconds of compilation per process).

    Parameters
    ----------
    heatmaps : (F, N, R, R) float   one heatmap per landmark and face
    centers : (F, 2) float          crop centres (see :func:`crop_geometry`)
    scales : (F,) float             crop scales

    Returns
    -------
    landmarks : (F, N, 2) float64    source pixels, y down
    confidence : (F, N) float64      the heatmap maximum of each landmark
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4 or heatmaps.shape[2] != heatmaps.shape[3]:
        raise ValueError(f"expected (F, N, R, R) heatmaps, got {heatmaps.shape}")
    faces, points, resolution, _ = heatmaps.shape
    centers = np.asarray(centers, dtype=np.float64).reshape(faces, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(faces)
    flat = heatmaps.reshape(faces, points, resolution * resolution)
    index = np.argmax(flat, axis=-1)
    confidence = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
    row, col = np.divmod(index, resolution)
    interior = (col > 0) & (col < resolution - 1) & (row > 0) & (row < resolution - 1)

    def value_at(rows, cols):
        rows = np.clip(rows, 0, resolution - 1)
        cols = np.clip(cols, 0, resolution - 1)
        return np.take_along_axis(flat, (rows * resolution + cols)[..., None], axis=-1)[..., 0]

    step_x = np.sign(value_at(row, col + 1) - value_at(row, col - 1)) * 0.25
    step_y = np.sign(value_at(row + 1, col) - value_at(row - 1, col)) * 0.25
    # Cell centres are at index + 0.5 in face-alignment's heatmap coordinates.
    grid = np.stack([col + 0.5 + np.where(interior, step_x, 0.0),
                     row + 0.5 + np.where(interior, step_y, 0.0)], axis=-1)
    side = SCALE_FACTOR * scales[:, None, None]
    landmarks = (grid / resolution - 0.5) * side + centers[:, None, :]
    return landmarks.astype(np.float64), confidence.astype(np.float64)


def modules_in_state_dict(state_dict) -> int:
    """Number of stacked hourglasses of a FAN state dict (4 for 2DFAN4).

    Raises
    ------
    ValueError   when the dict has no heatmap layer ``l<i>.weight`` (not a FAN state dict)
    """
    found = [int(match.group(1)) for key in state_dict
             if (match := re.fullmatch(r"l(\d+)\.weight", key))]
    if not found:
        raise ValueError("not a face-alignment FAN state dict: no 'l<i>.weight' heatmap layer")
    return max(found) + 1


class FanLandmarker:
    """Face boxes (dlib HOG or S3FD) and 2D-FAN landmarks.

    Parameters
    ----------
    weights_path : str or Path, optional
        A 2D-FAN state-dict file; default ``$TORCH_HOME/hub/checkpoints/2DFAN4-11f355bf06.pth.tar``
        (where face-alignment keeps it).
    device : str, optional
        torch device; default ``cuda`` when available, else ``cpu``.
    face_detector : {"dlib", "sfd"}
        Box detector: dlib's HOG (CPU, no extra file) or face-alignment's S3FD (needs
        ``s3fd-619a316812.pth`` in the hub checkpoints or ``path_to_detector`` in
        ``face_detector_kwargs``).
    face_detector_kwargs : dict, optional
        For ``sfd``: ``path_to_detector``, ``filter_threshold``. For ``dlib``: ``upsample``,
        ``min_face_px`` (see :class:`DlibLandmarker`).
    flip_input : bool
        Also run the mirrored crop and add its heatmaps (twice the cost, slightly steadier).
    batch_size : int
        Most face crops per network call.
    """

    name = "fan"

    def __init__(self, weights_path=None, *, device: str | None = None,
                 face_detector: str = "dlib", face_detector_kwargs: dict | None = None,
                 flip_input: bool = False, batch_size: int = 32):
        if face_detector not in FACE_DETECTORS:
            raise ValueError(f"unknown face detector {face_detector!r}; use one of "
                             f"{FACE_DETECTORS}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.weights_path = weights_path
        self.device = device
        self.face_detector = face_detector
        self.face_detector_kwargs = dict(face_detector_kwargs or {})
        self.flip_input = flip_input
        self.batch_size = batch_size
        self._network = None
        self._boxes = None
        self._device = None

    @property
    def version(self) -> str:
        fa_version = importlib.metadata.version("face-alignment")
        weights = Path(self.weights_path).name if self.weights_path else WEIGHTS_FILE
        flip = "+flip" if self.flip_input else ""
        return f"face-alignment-{fa_version}/{weights}{flip}/boxes-{self.face_detector}"

    def weights_file(self) -> Path:
        """The FAN state-dict file this landmarker loads."""
        if self.weights_path:
            return Path(self.weights_path)
        return hub_checkpoint_dir() / WEIGHTS_FILE

    def detector_weights_file(self) -> Path | None:
        """The S3FD weights file, or None for dlib boxes."""
        if self.face_detector != "sfd":
            return None
        if self.face_detector_kwargs.get("path_to_detector"):
            return Path(self.face_detector_kwargs["path_to_detector"])
        return hub_checkpoint_dir() / SFD_WEIGHTS_FILE

    def check_available(self) -> None:
        """Raise ``FileNotFoundError`` saying which file to place where; nothing downloads.

        Raises ``ImportError`` when torch or face-alignment (the ``fan`` extra) is missing.
        """
        for module, package in (("torch", "torch"), ("face_alignment", "face-alignment")):
            if importlib.util.find_spec(module) is None:
                raise ImportError(f"the FAN landmarker needs {package}: "
                                  "pip install 'expnet-data[fan]'")
        weights = self.weights_file()
        if not weights.is_file():
            if self.weights_path:
                raise FileNotFoundError(f"FAN weights not found: {weights}")
            raise FileNotFoundError(
                f"FAN weights not found: place {WEIGHTS_FILE} in {weights.parent} "
                "(or pass --landmarker-weights PATH); it is face-alignment's 2DFAN4 file, "
                "https://www.adrianbulat.com/downloads/python-fan/" + WEIGHTS_FILE)
        detector = self.detector_weights_file()
        if detector is not None and not detector.is_file():
            raise FileNotFoundError(
                f"S3FD weights not found: place {SFD_WEIGHTS_FILE} in {detector.parent} "
                "(or pass face_detector_kwargs={'path_to_detector': PATH}), or use "
                "face_detector='dlib'")

    def load(self) -> FanLandmarker:
        """Load the network and the box detector (heavy; call once per process)."""
        import torch
        from face_alignment.models import FAN

        self.check_available()
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        # The same load as face-alignment 1.5's FaceAlignment._load_native.
        state_dict = torch.load(self.weights_file(), map_location=device, weights_only=True)
        network = FAN(modules_in_state_dict(state_dict))
        network.load_state_dict(state_dict)
        network.to(device, dtype=torch.float32)
        network.eval()
        self._boxes = self._load_box_detector(device)
        self._network, self._device = network, device
        return self

    def _load_box_detector(self, device: str):
        if self.face_detector == "dlib":
            from fitting.landmarks.dlib_backend import DlibLandmarker

            return DlibLandmarker(**self.face_detector_kwargs)
        from face_alignment.detection.sfd import FaceDetector

        options = {key: value for key, value in self.face_detector_kwargs.items()
                   if key != "path_to_detector"}
        return FaceDetector(device=device, path_to_detector=str(self.detector_weights_file()),
                            **options)

    def detect_boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`Landmarker.detect_boxes`; scores are HOG margins or S3FD probabilities."""
        check_rgb_image(image)
        if self._network is None:
            self.load()
        if self.face_detector == "dlib":
            return self._boxes.detect_boxes(image)
        found = np.asarray(self._boxes.detect_from_image(image.copy()), dtype=np.float64)
        found = found.reshape(-1, 5)
        return found[:, :4].copy(), found[:, 4].copy()

    def landmarks_for_boxes(self, images: list, boxes: list) -> list:
        """:meth:`Landmarker.landmarks_for_boxes`, all crops of all images in shared batches.

        The confidence of a point is its heatmap's peak value.
        """
        import torch
        from face_alignment.utils import crop, flip

        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box arrays")
        if self._network is None:
            self.load()
        counts, crops, centers, scales = [], [], [], []
        for image, image_boxes in zip(images, boxes):
            check_rgb_image(image)
            image_centers, image_scales = crop_geometry(np.reshape(image_boxes, (-1, 4)))
            counts.append(len(image_centers))
            for center, scale in zip(image_centers, image_scales):
                crops.append(crop(image, center, scale).transpose(2, 0, 1))
            centers.append(image_centers)
            scales.append(image_scales)
        if not crops:
            return [(np.zeros((0, NUM_LANDMARKS, 2)), np.zeros((0, NUM_LANDMARKS)))
                    for _ in images]
        stacked = torch.from_numpy(np.stack(crops))
        heatmaps = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                chunk = stacked[start:start + self.batch_size].to(
                    self._device, dtype=torch.float32) / 255.0
                output = self._network(chunk)[-1]
                if self.flip_input:
                    output = output + flip(self._network(flip(chunk))[-1], is_label=True)
                heatmaps.append(output.float().cpu().numpy())
        landmarks, confidence = decode_heatmaps(np.concatenate(heatmaps),
                                                np.concatenate(centers),
                                                np.concatenate(scales))
        ends = np.cumsum(counts)
        return [(landmarks[end - count:end], confidence[end - count:end])
                for count, end in zip(counts, ends)]

    def detect_batch(self, images: list) -> list:
        """:meth:`Landmarker.detect_batch`, the crops of all the images batched together."""
        for image in images:
            check_rgb_image(image)
        detections = [self.detect_boxes(image) for image in images]
        marked = self.landmarks_for_boxes(images, [boxes for boxes, _ in detections])
        results = []
        for image, (boxes, scores), (landmarks, confidence) in zip(images, detections, marked):
            faces = tuple(Face(box=box, score=float(score), landmarks=points,
                               landmark_confidence=point_confidence)
                          for box, score, points, point_confidence
                          in zip(boxes, scores, landmarks, confidence))
            results.append(ImageFaces(faces=faces, image_size=(image.shape[1], image.shape[0]),
                                      failure=None if faces else "no_face"))
        return results

    def detect(self, image: np.ndarray) -> ImageFaces:
        """:meth:`detect_batch` of one image."""
        return self.detect_batch([image])[0]
