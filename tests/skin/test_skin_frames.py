"""Reading frames: good files load, every kind of bad file gets an error naming file and problem."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from appliance.hostile import progressive_jpeg
from appliance.skin.frames import FrameError, load_frame


def _jpeg(path: Path, height: int = 960, width: int = 1280) -> Path:
    image = np.full((height, width, 3), (90, 120, 180), np.uint8)
    cv2.imwrite(str(path), image)
    return path


def test_good_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    rgb = load_frame(_jpeg(tmp_path / "ok.jpg"))
    assert rgb.shape == (960, 1280, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags.writeable  # callers draw on it and balance it in place
    assert abs(int(rgb[0, 0, 0]) - 180) <= 2  # BGR on disk becomes RGB in memory


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match=r"nope\.jpg: file not found"):
        load_frame(tmp_path / "nope.jpg")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(FrameError, match=r"empty\.jpg: empty file"):
        load_frame(tmp_path / "empty.jpg")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _jpeg(tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match=r"cut\.jpg: truncated JPEG"):
        load_frame(tmp_path / "cut.jpg")


def test_a_jpeg_followed_by_other_data_is_the_picture_before_it(tmp_path: Path) -> None:
    """A phone's motion photo keeps its video after the JPEG's end-of-image marker (a maker's
    trailer does too): the picture is whole, and viewers show it. It was refused as a
    "truncated JPEG (no end-of-image marker); copy the file again", which no copy mends."""
    data = _jpeg(tmp_path / "full.jpg").read_bytes()
    trailer = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64  # an MP4 box, then data
    (tmp_path / "motion.jpg").write_bytes(data + trailer)
    assert np.array_equal(load_frame(tmp_path / "motion.jpg"), load_frame(tmp_path / "full.jpg"))


def test_a_cut_jpeg_with_a_thumbnail_is_still_truncated(tmp_path: Path) -> None:
    """An EXIF thumbnail is a whole JPEG inside the frame's APP1 segment: its end-of-image
    marker is not the frame's, and a frame cut short after it stays refused as truncated,
    trailer or not."""
    exif = Image.Exif()
    exif[0x0112] = 1
    thumb = tmp_path / "thumb.jpg"
    Image.new("RGB", (160, 120), (180, 120, 90)).save(thumb)
    app1 = b"Exif\x00\x00" + exif.tobytes() + thumb.read_bytes()  # carries 0xFFD9
    data = _jpeg(tmp_path / "full.jpg").read_bytes()
    framed = data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:]
    assert load_frame_bytes(tmp_path / "framed.jpg", framed).shape == (960, 1280, 3)
    cut = framed[: len(framed) * 2 // 3]
    for name, body in (("cut.jpg", cut), ("cut-trailer.jpg", cut + b"ftypmp42" + bytes(99))):
        with pytest.raises(FrameError, match=re.escape(f"{name}: truncated JPEG")):
            load_frame_bytes(tmp_path / name, body)


def load_frame_bytes(path: Path, data: bytes) -> np.ndarray:
    """``load_frame`` of a file holding ``data``."""
    path.write_bytes(data)
    return load_frame(path)


def test_corrupt_jpeg(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8" + bytes(range(256)) * 20 + b"\xff\xd9")
    with pytest.raises(FrameError, match=r"bad\.jpg: corrupt image data"):
        load_frame(tmp_path / "bad.jpg")


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("customer notes, not a photo")
    with pytest.raises(FrameError, match=r"notes\.jpg: not an image"):
        load_frame(tmp_path / "notes.jpg")


def test_a_sound_file_is_not_an_image_and_a_webp_frame_is_read(tmp_path: Path) -> None:
    """A WAV (RIFF, as WebP) was "corrupt image data (header unreadable); copy the file
    again", and the refusal of a GIF named the formats read without WebP, which is read."""
    sound = tmp_path / "capture.jpg"
    sound.write_bytes(b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(28))
    with pytest.raises(FrameError, match=r"capture\.jpg: not an image \(no "
                       r"JPEG/PNG/BMP/TIFF/WebP signature\); pass image files"):
        load_frame(sound)
    webp = tmp_path / "frame.webp"
    Image.new("RGB", (1280, 960), (180, 120, 90)).save(webp, lossless=True)
    assert load_frame(webp)[0, 0].tolist() == [180, 120, 90]


def test_wrong_size(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match=r"small\.jpg: wrong size 640x480 px"):
        load_frame(_jpeg(tmp_path / "small.jpg", 480, 640))
    assert load_frame(tmp_path / "small.jpg", expected_shape=None).shape == (480, 640, 3)


def test_a_picture_of_another_size_is_told_to_be_cropped_not_resized(tmp_path: Path) -> None:
    """A 2592x1944 picture was told "resize or crop it": resized to 1280x960 it was measured at
    the config's 10 um/px where its pixels now span about 20 um each, every feature wrong."""
    with pytest.raises(FrameError) as refused:
        load_frame(_jpeg(tmp_path / "big.jpg", 1944, 2592))
    assert str(refused.value) == (
        f"{tmp_path / 'big.jpg'}: wrong size 2592x1944 px (from the header); the microscope "
        "delivers 1280x960 px frames: crop it to that size, or check the camera mode (resizing "
        "it changes its micrometres per pixel, the scale it must be measured at)")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_frame_stored_on_its_side_that_exif_turns_upright_is_measured_as_shown(
    tmp_path: Path, suffix: str
) -> None:
    """A camera or phone stores the frame 960x1280 with EXIF Orientation 6 ("turn 90 degrees
    clockwise to show"): every viewer shows the 1280x960 frame, and it was refused as "wrong
    size 960x1280 px" by its header alone."""
    rows, cols = np.mgrid[0:960, 0:1280]
    upright = np.dstack([cols // 5, rows // 4, (rows + cols) // 9]).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(upright).copy()).save(tmp_path / f"side{suffix}", exif=exif)
    rgb = load_frame(tmp_path / f"side{suffix}")
    assert rgb.shape == (960, 1280, 3)
    if suffix == ".png":  # lossless: the very pixels of the upright frame
        assert np.array_equal(rgb, upright)
    else:  # lossy: the upright frame, not a mirror or the other turn
        assert np.abs(rgb.astype(int) - upright).max() < 12


def test_a_portrait_picture_is_told_to_be_turned(tmp_path: Path) -> None:
    with pytest.raises(FrameError) as refused:
        load_frame(_jpeg(tmp_path / "tall.jpg", 1280, 960))
    assert str(refused.value) == (
        f"{tmp_path / 'tall.jpg'}: 960x1280 px, a portrait picture; the microscope delivers "
        "1280x960 px landscape frames: turn it a quarter turn, or check the camera mode")


def test_folder_is_not_a_frame(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="a folder, not an image file"):
        load_frame(tmp_path)


def test_jpeg_pixels_and_exif_turn_are_those_opencv_gives(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    texture = Image.fromarray(rng.integers(0, 255, (60, 80, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF Orientation: turn 90 degrees clockwise to show
    texture.save(tmp_path / "turned.jpg", quality=90, exif=exif)
    rgb = load_frame(tmp_path / "turned.jpg", expected_shape=None)
    opencv = cv2.cvtColor(cv2.imread(str(tmp_path / "turned.jpg")), cv2.COLOR_BGR2RGB)
    assert rgb.shape == (80, 60, 3)
    assert np.array_equal(rgb, opencv)


def test_a_frame_an_exif_orientation_turns_sideways_is_refused_saying_so(tmp_path: Path) -> None:
    """Stored 1280x960 (as every file tool shows it), tagged "turn 90 degrees": the message
    names the tag, not a size the file does not have."""
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF Orientation: turn 90 degrees clockwise to show
    frame = Image.new("RGB", (1280, 960), (180, 120, 90))
    frame.save(tmp_path / "turned.jpg", quality=90, exif=exif)
    with pytest.raises(FrameError) as refused:
        load_frame(tmp_path / "turned.jpg")
    assert str(refused.value) == (
        f"{tmp_path / 'turned.jpg'}: stored 1280x960 px, but its EXIF orientation turns it to "
        "960x1280 px; the microscope delivers 1280x960 px frames upright (save it without the "
        "orientation tag)")


def test_a_tiff_of_more_samples_a_pixel_than_rgba_is_named_for_them_not_called_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a multispectral stack of 40 samples a pixel was "corrupt image data (header unreadable);
    # copy the file again", after Pillow's own "ERROR PIL.TiffImagePlugin: More samples per
    # pixel than can be decoded: 40" line
    path = tmp_path / "stack.tiff"
    tifffile.imwrite(path, np.zeros((960, 1280, 40), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(FrameError, match=r"stack\.tiff: a TIFF of 40 samples a pixel, which "
                       r"cannot be read here; save the frame as JPEG"):
        load_frame(path)
    assert not [record for record in caplog.records if record.name.startswith("PIL")]


@pytest.mark.parametrize("channels", [3, 1])
def test_a_float_tiff_is_named_for_its_samples_not_called_corrupt(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], channels: int
) -> None:
    # a well-formed TIFF of 32-bit float samples (as scientific tools save them): the user
    # needs to save it otherwise, not to copy it again; and libtiff's own "Sorry, can not
    # handle images with 32-bit samples" must not reach stderr past the command's message
    shape = (960, 1280, channels) if channels == 3 else (960, 1280)
    path = tmp_path / "frame.tiff"
    assert cv2.imwrite(str(path), np.random.default_rng(0).random(shape, np.float32))
    with pytest.raises(FrameError, match=r"frame\.tiff: a TIFF of floating-point samples, "
                       r"which cannot be read here; save the frame as JPEG"):
        load_frame(path)
    assert "Sorry" not in capfd.readouterr().err


def test_a_jpeg_of_more_scans_than_a_camera_writes_is_refused_before_decoding(
        tmp_path: Path) -> None:
    """A progressive JPEG sending one scan again and again is decoded over the whole frame once
    a scan: 10,000 scans in 110 KB held `analyze` 1.35 s a frame, a few MB of them minutes.
    A pathology slide had this bound already (appliance/jpegscans.py); a frame had none."""
    path = tmp_path / "scans.jpg"
    path.write_bytes(progressive_jpeg(1280, 960, repeated_scans=300))
    with pytest.raises(FrameError, match=rf"^{path}: a JPEG of more than 256 scans or 4096 "
                       "marker segments .*; save it again as a baseline JPEG or as PNG$"):
        load_frame(path)
    comments = tmp_path / "comments.jpg"
    good = _jpeg(tmp_path / "good.jpg").read_bytes()
    comments.write_bytes(good[:2] + b"\xff\xfe\x00\x02" * 5000 + good[2:])  # empty COM segments
    with pytest.raises(FrameError, match=rf"^{comments}: a JPEG of more than 256 scans"):
        load_frame(comments)


def test_a_progressive_jpeg_frame_of_a_few_scans_is_read_as_the_baseline_one(
        tmp_path: Path) -> None:
    pixels = np.zeros((960, 1280, 3), np.uint8)
    pixels[:, :, 0], pixels[:, :, 2] = np.arange(1280) % 256, 200
    Image.fromarray(pixels).save(tmp_path / "progressive.jpg", progressive=True, quality=95)
    Image.fromarray(pixels).save(tmp_path / "baseline.jpg", quality=95)
    progressive = load_frame(tmp_path / "progressive.jpg")
    assert progressive.shape == (960, 1280, 3)
    assert np.abs(progressive.astype(int) - load_frame(tmp_path / "baseline.jpg")).max() <= 8
