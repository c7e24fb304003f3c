"""The one Arrow schema of a label row and of a failure row (schema version 3).

Writer, readers and tests import these objects; nobody spells a column name twice.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 3
# Versions whose shards readers still accept; version 1 lacks the blendshapes column, versions
# 1 and 2 the video columns (frame_index, time_s, track_id) and face_descriptor.
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
# Label width and landmarks per row: the row contract's own constants (schemas never imports
# fitting; tests/schemas/test_rows.py checks them against fitting.models.model's).
EXPRESSION_DIM = 29
NUM_LANDMARKS = 68
NUM_BLENDSHAPES = 52         # ARKit-style named units; names in the dataset metadata
FACE_DESCRIPTOR_DIM = 128    # dlib ResNet face identity descriptor

# Column names of a label row.
ID = "id"
SOURCE_URI = "source_uri"
IMAGE = "image"
LABEL = "label"
SUBJECT = "subject"
# Subjects that begin with this prefix were made by the pipeline (``--subject-from-faces``),
# not given with the input; a given subject may not begin with it.
AUTO_SUBJECT_PREFIX = "auto:"
EXPRESSION = "expression"
IDENTITY = "identity"
ROTATION = "rotation"
YAW = "yaw"
PITCH = "pitch"
ROLL = "roll"
SCALE = "scale"
TRANSLATION = "translation"
LANDMARKS = "landmarks"
SOURCE_LANDMARKS = "source_landmarks"
FACE_BOX = "face_box"
FIT_RESIDUAL = "fit_residual"
LANDMARKER = "landmarker"
MODEL_ID = "model_id"
BLENDSHAPES = "blendshapes"
# Video frames only (null for a still image): the slot of the --video-fps sampling grid, the
# frame's own timestamp in seconds, and the face track (one person) the face belongs to.
FRAME_INDEX = "frame_index"
TIME_S = "time_s"
TRACK_ID = "track_id"
FACE_DESCRIPTOR = "face_descriptor"

# Column names of a failure row.
STAGE = "stage"
REASON = "reason"
MESSAGE = "message"

IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])


def _floats(length: int) -> pa.DataType:
    return pa.list_(pa.float32(), length)


ROW_FIELDS = (
    pa.field(ID, pa.string(), nullable=False),
    pa.field(SOURCE_URI, pa.string(), nullable=False),
    # Nullable although always set: Hugging Face `datasets` applies the `huggingface` features
    # (decoding this column as an Image) only when the field matches its own, nullable one.
    pa.field(IMAGE, IMAGE_TYPE),
    pa.field(LABEL, pa.string()),
    pa.field(SUBJECT, pa.string()),
    pa.field(EXPRESSION, _floats(EXPRESSION_DIM), nullable=False),
    pa.field(IDENTITY, pa.list_(pa.float32()), nullable=False),
    pa.field(ROTATION, _floats(9), nullable=False),
    pa.field(YAW, pa.float32(), nullable=False),
    pa.field(PITCH, pa.float32(), nullable=False),
    pa.field(ROLL, pa.float32(), nullable=False),
    pa.field(SCALE, pa.float32(), nullable=False),
    pa.field(TRANSLATION, _floats(2), nullable=False),
    pa.field(LANDMARKS, _floats(2 * NUM_LANDMARKS), nullable=False),
    pa.field(SOURCE_LANDMARKS, _floats(2 * NUM_LANDMARKS), nullable=False),
    pa.field(FACE_BOX, _floats(4), nullable=False),
    pa.field(FIT_RESIDUAL, pa.float32(), nullable=False),
    pa.field(LANDMARKER, pa.string(), nullable=False),
    pa.field(MODEL_ID, pa.string(), nullable=False),
    # Null for a model without named units; new in schema version 2. A variable-length list:
    # Parquet files with null fixed-size lists do not read back (pyarrow 'Expected all lists
    # to be of size=52'), so the 52 is checked by schemas.validate instead.
    pa.field(BLENDSHAPES, pa.list_(pa.float32())),
    # New in schema version 3; null for still images.
    pa.field(FRAME_INDEX, pa.int64()),
    pa.field(TIME_S, pa.float64()),
    pa.field(TRACK_ID, pa.string()),
    # Who the face is (dlib's 128-D ResNet descriptor; faces of one person lie within about
    # 0.6 of each other). Null unless the run computed descriptors (--face-descriptors or
    # --subject-from-faces); variable-length for the reason given for blendshapes. New in
    # schema version 3.
    pa.field(FACE_DESCRIPTOR, pa.list_(pa.float32())),
)
# Columns a shard of an older readable version may lack: name -> version that added it.
COLUMN_SINCE = {BLENDSHAPES: 2, FRAME_INDEX: 3, TIME_S: 3, TRACK_ID: 3, FACE_DESCRIPTOR: 3}

ROW_SCHEMA = pa.schema(ROW_FIELDS)

FAILURE_SCHEMA = pa.schema([
    pa.field(ID, pa.string(), nullable=False),
    pa.field(SOURCE_URI, pa.string(), nullable=False),
    pa.field(STAGE, pa.string(), nullable=False),
    pa.field(REASON, pa.string(), nullable=False),
    pa.field(MESSAGE, pa.string()),
])

# Stages at which an input can fail, in pipeline order. The stage column is a plain string, so
# a reader meets any other stage name (none is written) without error; inspection lists such
# a stage after these.
STAGES = ("read", "decode", "detect", "fit")


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def _sequence(dtype: str, length: int = -1) -> dict:
    return {"feature": _value(dtype), "length": length, "_type": "Sequence"}


# Hugging Face `datasets` features: without them the image column reads as a plain dict.
HUGGINGFACE_FEATURES = {
    ID: _value("string"),
    SOURCE_URI: _value("string"),
    IMAGE: {"_type": "Image"},
    LABEL: _value("string"),
    SUBJECT: _value("string"),
    EXPRESSION: _sequence("float32", EXPRESSION_DIM),
    IDENTITY: _sequence("float32"),
    ROTATION: _sequence("float32", 9),
    YAW: _value("float32"),
    PITCH: _value("float32"),
    ROLL: _value("float32"),
    SCALE: _value("float32"),
    TRANSLATION: _sequence("float32", 2),
    LANDMARKS: _sequence("float32", 2 * NUM_LANDMARKS),
    SOURCE_LANDMARKS: _sequence("float32", 2 * NUM_LANDMARKS),
    FACE_BOX: _sequence("float32", 4),
    FIT_RESIDUAL: _value("float32"),
    LANDMARKER: _value("string"),
    MODEL_ID: _value("string"),
    BLENDSHAPES: _sequence("float32"),
    FRAME_INDEX: _value("int64"),
    TIME_S: _value("float64"),
    TRACK_ID: _value("string"),
    FACE_DESCRIPTOR: _sequence("float32"),
}

# Column names and value of a prediction row (what `expnet predict` writes).
SOURCE = "source"
CHECKPOINT = "checkpoint"
PREDICTED = "predicted"

# One row per input image: the checkpoint's 29 coefficients in sigma units. ``checkpoint``
# is the sha256 of the checkpoint file, so a prediction names exactly the weights it came from.
PREDICTION_SCHEMA = pa.schema([
    pa.field(ID, pa.string(), nullable=False),
    pa.field(SOURCE_URI, pa.string(), nullable=False),
    pa.field(EXPRESSION, _floats(EXPRESSION_DIM), nullable=False),
    pa.field(SOURCE, pa.string(), nullable=False),
    pa.field(CHECKPOINT, pa.string(), nullable=False),
])
