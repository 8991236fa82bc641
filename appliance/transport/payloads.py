"""The payload contract (DESIGN.md "Payload contract"): MQTT JSON messages as pydantic models.

The JSON Schemas shipped in ``appliance/schemas/`` are generated from these models
(``python -m appliance.transport.payloads``) and a test keeps them in step, because back-office
programs we do not write consume them.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from appliance import safejson
from appliance.logsafe import INVISIBLE, escape_controls

MAX_PAYLOAD_BYTES = 256 * 1024
RESULT_SCHEMA: Final = "appliance.result/1"
STATUS_SCHEMA: Final = "appliance.status/1"
MODEL_STATE_SCHEMA: Final = "appliance.model_state/1"
ACK_SCHEMA: Final = "appliance.ack/1"
MAX_ACK_IDS = 500
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# The feature keys every measurement and every ground-truth sidecar carries (docs/measurement.md).
TEXTURE_PORE_KEYS = (
    "pore_count",
    "pore_density_per_cm2",
    "pore_mean_diameter_um",
    "pore_area_ratio",
    "furrow_density_mm_per_mm2",
    "hill_density_per_mm2",
    "hill_mean_area_mm2",
    "furrow_mean_width_um",
    "furrow_anisotropy",
)
COLOUR_KEYS = ("lab_l", "lab_a", "lab_b", "melanin_index", "erythema_index", "shine_ratio")
FEATURE_KEYS = (*TEXTURE_PORE_KEYS, "kime_score", *COLOUR_KEYS)
FeatureKey = Literal[
    "pore_count", "pore_density_per_cm2", "pore_mean_diameter_um", "pore_area_ratio",
    "furrow_density_mm_per_mm2", "hill_density_per_mm2", "hill_mean_area_mm2",
    "furrow_mean_width_um", "furrow_anisotropy", "kime_score", "lab_l", "lab_a", "lab_b",
    "melanin_index", "erythema_index", "shine_ratio",
]  # the same keys as FEATURE_KEYS (a test keeps them in step)

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# a UUIDv7 in lower case (new_measurement_id): the only form a stored result's id has
MEASUREMENT_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
MAX_IDENTIFIER_CHARS = 64
AGE_BAND_PATTERN = r"^[0-9]{2}-[0-9]{2}$|^[0-9]{2}\+$"  # ASCII digits: \d takes any script's
BASE64_PATTERN = r"^[A-Za-z0-9+/]*={0,2}$"
IDENTIFIER_WORDS = ("ASCII letters, digits and _ . - only (no spaces), starting with a letter "
                    "or digit")
# what each pattern takes, in words: a refusal that quotes the pattern itself ("site: String
# should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'") is no answer for an operator
PATTERN_WORDS = {
    IDENTIFIER_PATTERN: IDENTIFIER_WORDS,
    MEASUREMENT_ID_PATTERN: "a UUIDv7 in lower case",
    AGE_BAND_PATTERN: "an age band such as 40-49 or 80+, in ASCII digits",
    BASE64_PATTERN: "base64 text",
}
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_IDENTIFIER_CHARS,
                                  pattern=IDENTIFIER_PATTERN)]


def _has_a_utc_reading(moment: datetime) -> datetime:
    """A time whose UTC reading is a time: ``0001-01-01T00:00+01:00`` names one before year 1,
    which the back office's first conversion to UTC met as an OverflowError (a dead letter
    said as an unexpected error, not as the field's fault)."""
    try:
        (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError("a time whose UTC reading lies outside the years 1-9999") from None
    return moment


Time = Annotated[datetime, AfterValidator(_has_a_utc_reading)]
# A count as the stores keep it (SQLite INTEGER, PostgreSQL BIGINT: signed 64 bits). A larger
# one is valid JSON, but the store would refuse it after validation, and its whole batch with it.
# No kiosk counts past it: its own outbox keeps its counts in SQLite INTEGERs as well.
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
# a kiosk's edge.keep_confirmed_h: its default and its most (30 days), which its status says
# (Status.keep_confirmed_h) and the back office asks erased ids forgotten for (kiosk_forgets.py)
KEEP_CONFIRMED_DEFAULT_H: Final = 48.0
KEEP_CONFIRMED_MAX_H: Final = 720.0
# The oldest a kiosk's unsent result can be (s): 100 years. A kiosk counts the age from the
# result's commit, stamped by its clock in Unix time (not before 1970), to its clock now, which
# the back office refuses more than 5 minutes ahead of its own (triage.py): under 100 years
# until 2070. It fits both stores' columns (SQLite REAL, PostgreSQL DOUBLE PRECISION) and the
# date arithmetic the back office does with it (placed_capture.py: the moment that result was
# committed), which a larger one (1e300, 2**64) overflowed, failing its kiosk's results.
MAX_OUTBOX_AGE_S = 100 * 365.25 * 86400
AgeSeconds = Annotated[float, Field(ge=0.0, le=MAX_OUTBOX_AGE_S, allow_inf_nan=False)]
# Every part of a result is bounded (strings in characters, lists and maps in entries) so that
# the largest valid result, each character one JSON escapes to 6 bytes, stays well under
# MAX_PAYLOAD_BYTES: a result over it would be refused for its size and never confirmed.
MAX_REASON_CHARS = 512
MAX_SCORES = 16  # of the quality gate
MAX_LABELS = 64  # of a model (appliance/inference/contract.py refuses more): its probabilities
MAX_NAME_CHARS = 64  # a score's or a label's name


def _drawn_whole(text: str) -> str:
    """A name, version or subject id holds no character that draws nothing or moves the text
    after it (logsafe.INVISIBLE: controls, bidirectional-text controls, zero-width marks, tags):
    no version, model or label a kiosk sends holds one (a model naming one is refused at load,
    inference/contract.py), and one there made two names read the same on an operator's
    screen, in the API and in exported files, which show them as sent."""
    if (hidden := INVISIBLE.search(text)) is not None:
        raise ValueError(f"holds {escape_controls(hidden.group())} at character "
                         f"{hidden.start() + 1}; a name, version or id holds no control or format "
                         "character (bidirectional-text controls, zero-width marks, tags)")
    return text


NO_HIDDEN = "No control or format character (Unicode categories Cc, Cf, Zl, Zp) nor Hangul filler."
# a name or a version: every character of it is drawn (free texts, the reasons, may quote
# anything: they are shown escaped instead, logsafe.escape_controls)
Drawn = Annotated[str, AfterValidator(_drawn_whole)]
Name = Annotated[Drawn, Field(min_length=1, max_length=MAX_NAME_CHARS, description=NO_HIDDEN)]


# What each feature can physically be (docs/measurement.md "Definitions"), so that a broken or
# hostile kiosk cannot put an impossible value (pore_count 2^62, a density of 1e300) into the
# cohort. Each bound is derived from how the feature is measured, over every frame a kiosk
# measures: 1280 x 960 px (capture/sources.py, skin/frames.py: `analyze` and the folder source
# take no other size) at any scale the config takes, up to 30 µm/px (config/skin.py
# MAX_UM_PER_PX), resampled to work pixels of 20 µm (skin/preprocess.py). The contract imports
# no measurement code; tests/transport/test_payload_bounds.py keeps these numbers in step with
# those modules and checks that every frame measured lies well inside.
KIOSK_FRAME_PX = (1280, 960)
COARSEST_UM_PER_PX = 30.0
WORK_UM_PER_PX = 20.0
# The largest frame: 38.4 x 28.8 mm at 30 µm/px, A = 1105.92 mm², a diagonal of 48 mm.
LARGEST_FRAME_MM2 = KIOSK_FRAME_PX[0] * KIOSK_FRAME_PX[1] * COARSEST_UM_PER_PX**2 / 1e6
LARGEST_FRAME_DIAGONAL_UM = math.hypot(*KIOSK_FRAME_PX) * COARSEST_UM_PER_PX
# Its work image: 1920 x 1440 work pixels at 30 µm/px.
MOST_WORK_PIXELS = (round(KIOSK_FRAME_PX[0] * COARSEST_UM_PER_PX / WORK_UM_PER_PX)
                    * round(KIOSK_FRAME_PX[1] * COARSEST_UM_PER_PX / WORK_UM_PER_PX))
# A work pixel is the frame's width over its width in work pixels, rounded to whole pixels
# (preprocess.work_size): at the finest scale taken (0.5 µm/px) 32 of them, so it is at least
# 20 x 32 / 32.5 = 19.69 µm wide whatever the scale.
NARROWEST_WORK_PX_UM = WORK_UM_PER_PX * 32 / 32.5
# pore_count: every pore is a candidate, a local maximum of the work depth at a work pixel of
# its own (skin/pores.py step 1; overlapping candidates keep the deepest): at most one pore a
# work pixel of the largest frame, 2,764,800.
MAX_PORE_COUNT = MOST_WORK_PIXELS
# pore_density_per_cm2: one pore a work pixel, at most 1e8 / 19.69² a cm², 257,874 rounded up.
MAX_PORES_PER_CM2 = float(math.ceil(1e8 / NARROWEST_WORK_PX_UM**2))
# hill_density_per_mm2: every hill holds at least one work pixel (a cut hill counts 1/2):
# at most 1e6 / 19.69² a mm², 2,579 rounded up.
MAX_HILLS_PER_MM2 = float(math.ceil(1e6 / NARROWEST_WORK_PX_UM**2))
# furrow_density_mm_per_mm2: centre lines run along the cracks between work pixels (hill
# borders: each pixel owns two cracks, its right and lower side) and through them (dead ends:
# at most a diagonal, sqrt(2), a pixel), so under 4 work-pixel widths of line a work pixel:
# 4 / 0.01969 mm = 203.125 mm a mm².
MAX_FURROW_MM_PER_MM2 = 4 / (NARROWEST_WORK_PX_UM / 1000)
# hill_mean_area_mm2: a hill lies in the frame, at most 1105.92 mm². pore_mean_diameter_um and
# furrow_mean_width_um: a pore's or a furrow's extent in the frame, at most its diagonal, 48 mm.
# CIELAB of a mean colour of the sRGB cube [0, 1]³ (8-bit values over 255; a white reference's
# correction clips at 255, skin/colour.py), OpenCV's conversion: L* 0-100, a* -86.19..98.23,
# b* -107.86..94.47; the bounds are the whole numbers just outside.
LAB_A_RANGE = (-87.0, 99.0)
LAB_B_RANGE = (-108.0, 95.0)
# melanin_index = 100 log10(1/R), erythema_index = 100 log10(R/G), with the mean red and green
# reflectances R, G of 8-bit values over 255, kept within 0.001-1 (skin/colour.py):
# melanin 0..300, erythema -300..300. A white frame's mean red is 1 only up to the rounding of
# the mean (its melanin index reads -1e-14), so melanin's floor sits a millionth below 0.
MAX_REFLECTANCE_INDEX = 300.0
MIN_MELANIN_INDEX = -1e-6
# A grade's probabilities sum to 1 within this. The kiosk grades only when its model's answer
# is a probability distribution: each value within PROBABILITY_TOLERANCE (0.001,
# inference/runner.py) of 0-1 and their sum within it of 1, and sends each clamped into 0-1
# (inference/classifier.py). A softmax sums to 1 within float32 rounding (64 labels: ~1e-5)
# and needs no clamping, but a model whose answers pass that check may have each of up to
# MAX_LABELS values clamped by 0.001 as well: the sum sent is within 0.001 x (1 + 64) of 1.
PROBABILITY_TOLERANCE = 1e-3
PROBABILITY_SUM_TOLERANCE = PROBABILITY_TOLERANCE * (1 + MAX_LABELS)


class PayloadError(ValueError):
    """A message that is not a valid payload; the text says why."""


# No NaN or infinity anywhere. Messages from the wire are also validated strictly
# (parse_payload: "42" is not a number, true is not a count); values built in Python (numpy
# scalars from the analysis) are converted as usual.
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Payload(BaseModel):
    model_config = _STRICT


class Features(_Payload):
    """Skin measurements of one frame; units are in the names (docs/measurement.md)."""

    pore_count: int = Field(ge=0, le=MAX_PORE_COUNT,
                            description="Pores whose centre lies in the frame.")
    pore_density_per_cm2: float = Field(ge=0.0, le=MAX_PORES_PER_CM2,
                                        description="pore_count per cm² of frame.")
    pore_mean_diameter_um: float = Field(ge=0.0, le=LARGEST_FRAME_DIAGONAL_UM,
                                         description="Mean equivalent circular diameter.")
    pore_area_ratio: float = Field(ge=0.0, le=1.0, description="Total pore area / frame area.")
    furrow_density_mm_per_mm2: float = Field(ge=0.0, le=MAX_FURROW_MM_PER_MM2,
                                             description="Furrow centre-line mm per mm².")
    hill_density_per_mm2: float = Field(ge=0.0, le=MAX_HILLS_PER_MM2,
                                        description="Hills (edge-cut count 1/2) per mm².")
    hill_mean_area_mm2: float = Field(ge=0.0, le=LARGEST_FRAME_MM2,
                                      description="Mean area of hills inside the frame.")
    furrow_mean_width_um: float = Field(ge=0.0, le=LARGEST_FRAME_DIAGONAL_UM,
                                        description="Furrow width along the centre line.")
    furrow_anisotropy: float = Field(ge=0.0, le=1.0, description="0 isotropic, 1 one direction.")
    kime_score: float = Field(ge=0.0, le=100.0, description="Texture fineness, higher = finer.")
    lab_l: float = Field(ge=0.0, le=100.0, description="CIELAB L* of the skin.")
    lab_a: float = Field(ge=LAB_A_RANGE[0], le=LAB_A_RANGE[1],
                         description="CIELAB a* of the skin (an sRGB colour's range).")
    lab_b: float = Field(ge=LAB_B_RANGE[0], le=LAB_B_RANGE[1],
                         description="CIELAB b* of the skin (an sRGB colour's range).")
    melanin_index: float = Field(ge=MIN_MELANIN_INDEX, le=MAX_REFLECTANCE_INDEX,
                                 description="Melanin index, 100 log10(1/R).")
    erythema_index: float = Field(ge=-MAX_REFLECTANCE_INDEX, le=MAX_REFLECTANCE_INDEX,
                                  description="Erythema index, 100 log10(R/G).")
    shine_ratio: float = Field(ge=0.0, le=1.0, description="Specular (shine) area / frame area.")


class Quality(_Payload):
    """The frame quality gate's verdict on the measured frame."""

    verdict: Literal["ok", "blurred", "overexposed", "underexposed", "no_contact", "moving"]
    reasons: list[Annotated[str, Field(max_length=MAX_REASON_CHARS)]] = Field(
        default_factory=list,
        max_length=16,
        description="Why not ok; on an ok frame, why some features were not measured "
        "('not measured: ...') or the grade was withheld ('not graded: ...'), "
        "docs/measurement.md 'Validated range'.",
    )
    scores: dict[Name, float] = Field(default_factory=dict, max_length=MAX_SCORES,
                                      description="Focus, exposure, ...")


class Classification(_Payload):
    """The on-device model's output for the measured features."""

    model: Drawn = Field(min_length=1, max_length=128, description=f"Model name. {NO_HIDDEN}")
    version: Drawn = Field(min_length=1, max_length=64,
                           description=f"Model version. {NO_HIDDEN}")
    label: Drawn = Field(min_length=1, max_length=64, description=f"Predicted label. {NO_HIDDEN}")
    probabilities: dict[Name, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        max_length=MAX_LABELS,
        description="Probability per label, the label among them; they sum to 1 within "
        f"{PROBABILITY_SUM_TOLERANCE:g}.",
    )

    @model_validator(mode="after")
    def _one_distribution(self) -> Self:
        """The grade is one of the labels graded, and their probabilities are a distribution:
        a label not among them, or probabilities summing to 3, was stored and entered the
        cohort's grade figures as if a model had given it."""
        if self.label not in self.probabilities:
            raise ValueError(f"label {escape_controls(self.label)[:64]!r} is not among the "
                             "probabilities' labels; the grade is one of the labels graded")
        total = math.fsum(self.probabilities.values())
        if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
            raise ValueError(f"probabilities sum to {total:.6g}; they sum to 1 within "
                             f"{PROBABILITY_SUM_TOLERANCE:g}")
        return self


def _band_in_order(band: str | None) -> str | None:
    """An age band runs from its first year to its last: "49-40" (which the pattern takes) was
    stored as a band of its own, drawn beside 40-49 in the cohort's tables and figures."""
    years = re.fullmatch(r"([0-9]{2})-([0-9]{2})", band or "")
    if years is not None and int(years.group(1)) > int(years.group(2)):
        raise ValueError(f"{band} ends before it starts; the first year comes first (40-49)")
    return band


class Subject(_Payload):
    """Pseudonymous facts about the person measured, when the kiosk asks for them."""

    # drawn whole, as a name is: the id an operator reads (the console, `results erasures`
    # show what draws nothing escaped) is the one `results erase --subject` must be given
    subject_id: Drawn | None = Field(None, max_length=64,
                                     description=f"Pseudonym, never a name. {NO_HIDDEN}")
    age_band: Annotated[str | None, AfterValidator(_band_in_order)] = Field(
        None, pattern=AGE_BAND_PATTERN,
        description="Age band, e.g. 40-49 or 80+; a band's first year is not after its last.",
    )
    # required: a subject without it (an age band, counted in the cohort) was stored as if
    # the customer had agreed; no kiosk sends one (edge/screen_state.py)
    consent: Literal[True] = Field(
        description="True: the customer agreed, on the kiosk screen, to keep this anonymous "
        "result with these facts; without consent a kiosk sends no subject at all, so a "
        "subject without it is refused.",
    )


class Result(_Payload):
    """One measurement session's result, published on ``{prefix}/{site}/{device}/result``."""

    schema_: Literal["appliance.result/1"] = Field(RESULT_SCHEMA, alias="schema")
    measurement_id: str = Field(
        pattern=MEASUREMENT_ID_PATTERN,
        description="UUIDv7: unique, time-ordered, stable across retries.",
    )
    device_id: Identifier
    site: Identifier
    captured_at: Time = Field(description="UTC time of the measured frame.")
    software_version: Drawn = Field(max_length=64, description="appliance version that "
                                    f"measured. {NO_HIDDEN}")
    quality: Quality
    features: Features
    classification: Classification | None = None
    subject: Subject | None = None
    not_validated: list[FeatureKey] = Field(
        default_factory=list,
        max_length=16,
        description="Features outside the range the method was validated on "
        "(docs/measurement.md): show them as not measured.",
    )
    thumbnail_jpeg_b64: str | None = Field(
        None, max_length=64 * 1024, pattern=BASE64_PATTERN, description="Opt-in only."
    )

    model_config = ConfigDict(**_STRICT, populate_by_name=True)

    def to_json(self) -> bytes:
        """The wire form: compact UTF-8 JSON with ``schema`` as the first key."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class ModelInfo(_Payload):
    """A model a kiosk names: the one an update is about, or the one serving."""

    name: Drawn = Field(max_length=128, description=NO_HIDDEN)
    version: Drawn = Field(max_length=64, description=NO_HIDDEN)


class Status(_Payload):
    """Retained device status on ``.../status``: the birth message and the last will."""

    schema_: Literal["appliance.status/1"] = Field(STATUS_SCHEMA, alias="schema")
    device_id: Identifier
    site: Identifier
    state: Literal["online", "offline"]
    at: Time
    software_version: Drawn | None = Field(None, max_length=64, description=NO_HIDDEN)
    model: ModelInfo | None = None
    camera: Literal["online", "offline"] | None = None
    outbox_depth: Count | None = Field(None, description="Results not yet acknowledged.")
    outbox_oldest_age_s: AgeSeconds | None = Field(
        None, description="Age of the oldest unacknowledged result (s)."
    )
    dropped: Count | None = Field(None, description="Results lost (full disk, age, size).")
    measuring_paused: Literal["disk_full", "storage"] | None = Field(
        None,
        description="Set in an online status while the kiosk does not measure because its "
        "outbox cannot keep a result: 'disk_full' (its disk is full), 'storage' (the outbox "
        "refuses writes or is damaged); absent while it measures. A back office older than "
        "this field refuses a status that carries it.",
    )
    outbox_in_use: Literal["repaired_copy"] | None = Field(
        None,
        description="Set in an online status while the kiosk keeps its results in a file other "
        "than its outbox: 'repaired_copy' (the repaired copy, outbox.sqlite3.repaired, because "
        "the damaged outbox cannot be moved aside: its permissions, an immutable file, a full "
        "disk); the kiosk measures and sends, and the copy takes the outbox's place at the "
        "first start that can move the damaged file. Absent otherwise. A back office older "
        "than this field refuses a status that carries it.",
    )

    keep_confirmed_h: float | None = Field(
        None,
        ge=0,
        le=KEEP_CONFIRMED_MAX_H,
        allow_inf_nan=False,
        description="The kiosk's edge.keep_confirmed_h where it is not the default "
        f"{KEEP_CONFIRMED_DEFAULT_H:g}: how long it keeps a result the back office confirmed "
        "(hours, at most 720), so that the back office asks it to forget an erased result "
        "that long (absent: the default, or a kiosk older than this field). A back office "
        "older than this field refuses a status that carries it.",
    )

    model_config = ConfigDict(**_STRICT, populate_by_name=True)

    def to_json(self) -> bytes:
        """The wire form."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class ModelState(_Payload):
    """What a device did with a model update, on ``.../model/state``."""

    schema_: Literal["appliance.model_state/1"] = Field(MODEL_STATE_SCHEMA, alias="schema")
    device_id: Identifier
    site: Identifier
    state: Literal["available", "downloading", "verified", "installed", "rejected", "rolled_back"]
    at: Time
    model: ModelInfo | None = Field(None, description="The model this step is about.")
    running: ModelInfo | None = Field(None, description="The model serving after this step.")
    reason: str | None = Field(None, max_length=1024)
    healthy: bool | None = Field(None, description="After install: the health check passed.")
    rollout: Drawn | None = Field(None, max_length=64,
                                  description=f"The signed assignment's rollout. {NO_HIDDEN}")

    model_config = ConfigDict(**_STRICT, populate_by_name=True)

    def to_json(self) -> bytes:
        """The wire form."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class Ack(_Payload):
    """The back office's end-to-end acknowledgement on ``.../ack``: ids it has committed."""

    schema_: Literal["appliance.ack/1"] = Field(ACK_SCHEMA, alias="schema")
    ids: list[Identifier] = Field(
        min_length=1, max_length=MAX_ACK_IDS, description="Committed ids (measurement ids)."
    )
    at: Time = Field(description="When the back office sent this acknowledgement.")

    model_config = ConfigDict(**_STRICT, populate_by_name=True)

    def to_json(self) -> bytes:
        """The wire form."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


PayloadT = TypeVar("PayloadT", Result, Status, ModelState, Ack)
PAYLOAD_MODELS: dict[str, type[Result] | type[Status] | type[ModelState] | type[Ack]] = {
    RESULT_SCHEMA: Result,
    STATUS_SCHEMA: Status,
    MODEL_STATE_SCHEMA: ModelState,
    ACK_SCHEMA: Ack,
}


def parse_payload(raw: bytes, model: type[PayloadT]) -> PayloadT:
    """Validate raw MQTT bytes as ``model``; PayloadError says what is wrong and where."""
    check_json(raw)
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        # a map's key is part of where: a kiosk's text, escaped as the refused value is
        where = escape_controls(".".join(str(p) for p in first["loc"])) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PayloadError(f"{where}: {_said(first)}{_why(first)}{more}") from exc


def _said(error: ErrorDetails) -> str:
    """Pydantic's message, a pattern's own text replaced by what it takes in words."""
    if error["type"] == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(error.get("ctx", {}).get("pattern", ""))
        if words is not None:
            return f"must be {words}"
    return error["msg"]


def _why(error: ErrorDetails) -> str:
    """What pydantic's terse JSON error means where Python's decoder took the text."""
    if error["type"] == "json_invalid" and "hex escape" in error["msg"]:
        return " (a string holds a lone UTF-16 surrogate escape, \\ud800-\\udfff unpaired)"
    return ""


def check_json(raw: bytes) -> None:
    """Refuse what a JSON object payload must not be: too big, not UTF-8 JSON, not an object,
    duplicate keys (which one would count?), NaN/Infinity (not JSON), nesting past Python's
    recursion limit."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not UTF-8: {exc}") from exc
    try:
        data = safejson.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except safejson.JsonNestingError as exc:  # hostile [[[[...]]]] must not crash a worker
        raise PayloadError("JSON nested too deeply") from exc
    except safejson.JsonNumberError as exc:
        raise PayloadError(str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not JSON, though valid UTF-8: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError(f"top level must be a JSON object, got {type(data).__name__}")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    data = dict(pairs)
    if len(data) != len(pairs):  # counted once each: list.count per key took seconds on 256 KiB
        counts = collections.Counter(key for key, _ in pairs)
        twice = sorted(key for key, count in counts.items() if count > 1)
        raise PayloadError(f"duplicate key(s) {', '.join(map(repr, twice))[:200]}")
    return data


def _no_constant(name: str) -> object:
    raise PayloadError(f"{name} is not JSON (numbers must be finite)")


def new_measurement_id(now_ms: int | None = None, seed: bytes | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits; sorts by time.

    With ``seed`` the "random" bits are its SHA-256 instead, so the same seed and time give the
    same id: a saved file measured again (after a kill) is the same measurement to the back
    office, which keeps one result per id.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    random_bytes = os.urandom(10) if seed is None else hashlib.sha256(seed).digest()[:10]
    rand = int.from_bytes(random_bytes, "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & (2**62 - 1))
    return str(uuid.UUID(int=value))


def utc_now() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


def json_schemas() -> dict[str, dict[str, object]]:
    """The JSON Schema of every payload, keyed by file name."""
    return {
        f"{name.replace('/', '-v').replace('.', '-')}.schema.json": model.model_json_schema(
            by_alias=True
        )
        for name, model in PAYLOAD_MODELS.items()
    }


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    """Write the JSON Schemas into ``folder`` (the package's shipped copies by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = folder / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_schemas():
        print(written_path)
