"""Face swap with OpenCV alone: Haar cascades (shipped inside opencv-python-headless 4.x)
find the faces, the source face is aligned onto each target face (by the eyes when both
are found in both faces, else by the face boxes), and Poisson blending
(cv2.seamlessClone) under an elliptical mask puts it in. Pixels outside the ellipses
are left as they were."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.pipelines.base import Output, PipelineInputError, StepCallback, encode_png

if TYPE_CHECKING:
    import numpy as np

NO_FACE_FOUND = "NO_FACE_FOUND"
Box = tuple[int, int, int, int]  # x, y, width, height
Point = tuple[float, float]


@dataclass(frozen=True)
class Detectors:
    faces: Any  # cv2.CascadeClassifier
    eyes: Any


def load(model_dir: Path | None, device: str, dtype: Any) -> Detectors:
    import cv2

    def cascade(name: str) -> Any:
        classifier = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
        if classifier.empty():
            raise LookupError(f"OpenCV's {name} is missing; install opencv-python-headless 4.x.")
        return classifier

    return Detectors(faces=cascade("haarcascade_frontalface_default.xml"), eyes=cascade("haarcascade_eye.xml"))


def run(detectors: Detectors, params: dict[str, Any], on_step: StepCallback) -> tuple[list[Output], dict[str, Any]]:
    import numpy as np
    from PIL import Image

    source = np.asarray(params["source_image"])
    target = np.asarray(params["target_image"])
    source_faces = _faces(detectors, source)
    if not source_faces:
        raise PipelineInputError(NO_FACE_FOUND, "source_image: no face was found.")
    target_faces = _faces(detectors, target)
    if not target_faces:
        raise PipelineInputError(NO_FACE_FOUND, "target_image: no face was found.")
    source_face = max(source_faces, key=lambda box: box[2] * box[3])
    result = target.copy()
    for index, target_face in enumerate(target_faces, start=1):
        result = _swap(detectors, source, source_face, result, target_face)
        on_step(index, len(target_faces))
    return [encode_png(Image.fromarray(result))], {"faces_swapped": len(target_faces), "method": "opencv"}


def _faces(detectors: Detectors, image: np.ndarray) -> list[Box]:
    import cv2

    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    smallest = max(24, min(gray.shape) // 16)
    found = detectors.faces.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
    return [tuple(int(value) for value in box) for box in found]  # type: ignore[misc]


def _eyes(detectors: Detectors, image: np.ndarray, face: Box) -> tuple[Point, Point] | None:
    """The two eye centres (left, right in the image), searched in the face's upper half."""
    import cv2

    x, y, width, height = face
    upper = cv2.cvtColor(image[y : y + height // 2, x : x + width], cv2.COLOR_RGB2GRAY)
    found = detectors.eyes.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5, minSize=(width // 10, width // 10))
    if len(found) < 2:
        return None
    two = sorted(found, key=lambda box: box[2] * box[3], reverse=True)[:2]
    centres = sorted((x + ex + ew / 2, y + ey + eh / 2) for ex, ey, ew, eh in two)
    return centres[0], centres[1]


def _alignment(detectors: Detectors, source: np.ndarray, source_face: Box, target: np.ndarray, target_face: Box) -> Any:
    """The 2x3 similarity transform taking the source face onto the target face."""
    import numpy as np

    box_scale = target_face[2] / source_face[2]
    source_eyes = _eyes(detectors, source, source_face)
    target_eyes = _eyes(detectors, target, target_face)
    if source_eyes and target_eyes:
        # Two points fix a similarity; as complex numbers it is one multiplication.
        source_span = complex(*source_eyes[1]) - complex(*source_eyes[0])
        rotation_scale = (complex(*target_eyes[1]) - complex(*target_eyes[0])) / source_span
        # Eye detections that disagree with the face boxes are wrong eyes, not a real fit.
        if abs(source_span) > 0 and 0.5 < abs(rotation_scale) / box_scale < 2.0:
            shift = complex(*target_eyes[0]) - rotation_scale * complex(*source_eyes[0])
            return np.float32(
                [
                    [rotation_scale.real, -rotation_scale.imag, shift.real],
                    [rotation_scale.imag, rotation_scale.real, shift.imag],
                ]
            )
    return np.float32(
        [
            [box_scale, 0, target_face[0] - source_face[0] * box_scale],
            [0, box_scale, target_face[1] - source_face[1] * box_scale],
        ]
    )


def _swap(detectors: Detectors, source: np.ndarray, source_face: Box, target: np.ndarray, target_face: Box) -> Any:
    import cv2
    import numpy as np

    height, width = target.shape[:2]
    transform = _alignment(detectors, source, source_face, target, target_face)
    warped = cv2.warpAffine(source, transform, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x, y, face_width, face_height = target_face
    centre = (x + face_width // 2, y + face_height // 2)
    # seamlessClone needs the mask clear of the image edges.
    margin = 2
    axes = (
        max(1, min(int(face_width * 0.42), centre[0] - margin, width - 1 - margin - centre[0])),
        max(1, min(int(face_height * 0.5), centre[1] - margin, height - 1 - margin - centre[1])),
    )
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, thickness=-1)
    # The clone is placed by the centre of the mask's bounding box, so that is where it goes.
    left, top, box_width, box_height = cv2.boundingRect(mask)
    placed_at = (left + box_width // 2, top + box_height // 2)
    return cv2.seamlessClone(warped, target, mask, placed_at, cv2.NORMAL_CLONE)
