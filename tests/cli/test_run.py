"""`nst run` end to end, as a subprocess on generated images."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from nst_cli.run import with_recorded
from nst_shared import provenance
from nst_shared.looks import LOOKS
from nst_shared.params import DEFAULTS, TransferParams
from tests.conftest import ROOT, make_image

NST = [sys.executable, "-m", "nst_cli.main"]


def test_nst_run_writes_picture(tmp_path):
    (tmp_path / "c.png").write_bytes(make_image(90, 60, seed=1))
    (tmp_path / "s1.jpg").write_bytes(make_image(64, 64, seed=2, fmt="JPEG"))
    (tmp_path / "s2.png").write_bytes(make_image(50, 70, seed=3))
    out = tmp_path / "out.webp"
    done = subprocess.run(
        [
            *NST,
            "run",
            "--content",
            str(tmp_path / "c.png"),
            "--style",
            str(tmp_path / "s1.jpg"),
            "--style",
            str(tmp_path / "s2.png"),
            "--style-blend",
            "0.7,0.3",
            "--output",
            str(out),
            "--max_size",
            "64",
            "--steps",
            "4",
            "--style_weight",
            "1e3",
            "--content_weight",
            "1",
            "--save-every",
            "2",
            "--seed",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    image = Image.open(out)
    assert image.format == "WEBP" and image.size == (64, 43)
    assert (tmp_path / "out.0002.webp").is_file() and (tmp_path / "out.0004.webp").is_file()
    record = provenance.read(out.read_bytes())  # the WebP's EXIF carries the record
    assert record is not None and record["params"]["style_blend"] == [0.7, 0.3] and record["steps_done"] == 4
    assert record["sha256"]["styles"] == [provenance.sha256((tmp_path / n).read_bytes()) for n in ("s1.jpg", "s2.png")]


def test_nst_run_records_a_drawn_seed_and_from_repaints_the_picture(tmp_path):
    (tmp_path / "c.png").write_bytes(make_image(90, 60, seed=1))
    (tmp_path / "s.png").write_bytes(make_image(64, 64, seed=2))
    # The precision pinned: a CPU's measured choice can differ between two runs on a loaded machine.
    inputs = ["--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "s.png"), "--precision", "fp32"]
    first = subprocess.run(
        [
            *NST,
            "run",
            *inputs,
            "--output",
            str(tmp_path / "a.png"),
            "--max-size",
            "64",
            "--steps",
            "3",
            "--init",
            "noise",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr
    info = subprocess.run([*NST, "info", str(tmp_path / "a.png")], cwd=ROOT, capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    record = json.loads(info.stdout)
    assert record["params"]["init"] == "noise" and 0 <= record["seed"] <= 2**31 - 1
    assert record["steps_done"] == 3 and record["device"] == "cpu" and record["precision"] == "fp32"

    # The same seed from the picture: the noise it started from, so the same picture on this CPU.
    again = subprocess.run(
        [*NST, "run", "--from", str(tmp_path / "a.png"), *inputs, "--output", str(tmp_path / "b.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert "differ" not in again.stderr
    assert provenance.read_file(tmp_path / "b.png") == record
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))

    # Flags given override the picture's parameters; a JPEG carries the record in its EXIF.
    (tmp_path / "other.png").write_bytes(make_image(64, 64, seed=9))
    override = subprocess.run(
        [
            *NST,
            "run",
            "--from",
            str(tmp_path / "a.png"),
            "--content",
            str(tmp_path / "c.png"),
            "--style",
            str(tmp_path / "other.png"),
            "--steps",
            "1",
            "--output",
            str(tmp_path / "c.jpg"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert override.returncode == 0, override.stderr
    assert "style images differ" in override.stderr
    jpeg = provenance.read_file(tmp_path / "c.jpg")
    assert jpeg is not None and Image.open(tmp_path / "c.jpg").format == "JPEG"
    assert jpeg["params"] == {**record["params"], "steps": 1} and jpeg["steps_done"] == 1


def test_nst_info_and_from_refuse_a_picture_without_a_record(tmp_path):
    (tmp_path / "plain.png").write_bytes(make_image(64, 64, seed=2))
    info = subprocess.run([*NST, "info", str(tmp_path / "plain.png")], cwd=ROOT, capture_output=True, text=True)
    assert info.returncode == 2 and "no nst record" in info.stderr
    run = subprocess.run(
        [*NST, "run", "--from", str(tmp_path / "plain.png"), "--output", str(tmp_path / "o.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "no nst record" in run.stderr and "Traceback" not in run.stderr


def test_nst_run_takes_print_sizes(tmp_path):
    # Two steps of a 4096 px plan land on its two coarsest scales; the picture comes out at the print size.
    (tmp_path / "c.png").write_bytes(make_image(90, 60, seed=1))
    (tmp_path / "s.png").write_bytes(make_image(64, 64, seed=2))
    out = tmp_path / "print.png"
    done = subprocess.run(
        [
            *NST,
            "run",
            "--content",
            str(tmp_path / "c.png"),
            "--style",
            str(tmp_path / "s.png"),
            "--output",
            str(out),
            "--max-size",
            "4096",
            "--steps",
            "2",
            "--memory-gb",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (4096, 2731)


def test_nst_run_unreadable_input_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    done = subprocess.run(
        [*NST, "run", "--content", str(tmp_path / "bad.png"), "--output", str(tmp_path / "o.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "nst run:" in done.stderr
    assert not (tmp_path / "o.png").exists()


def test_nst_run_bad_parameter(tmp_path):
    done = subprocess.run(
        [*NST, "run", "--steps", "0", "--output", str(tmp_path / "o.png")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and "--steps" in done.stderr and "Traceback" not in done.stderr


def test_nst_run_style_masks_and_colour_mode(tmp_path):
    (tmp_path / "c.png").write_bytes(make_image(64, 48, seed=1))
    (tmp_path / "s.png").write_bytes(make_image(64, 64, seed=2))
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (0, 0, 32, 48))
    mask.save(tmp_path / "left.png")
    out = tmp_path / "out.png"
    common = [
        *NST,
        "run",
        "--content",
        str(tmp_path / "c.png"),
        "--style",
        str(tmp_path / "s.png"),
        "--output",
        str(out),
        "--max_size",
        "64",
        "--steps",
        "3",
        "--scales",
        "1",
    ]
    done = subprocess.run(
        [*common, "--style-mask", str(tmp_path / "left.png"), "--color-mode", "match"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    painted = np.asarray(Image.open(out).convert("RGB"), dtype=float)
    photo = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"), dtype=float)
    assert np.abs(painted[:, 40:] - photo[:, 40:]).max() <= 1  # no mask there: the photo
    twice = subprocess.run(
        [*common, "--style-mask", str(tmp_path / "left.png"), "--style-mask", str(tmp_path / "left.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert twice.returncode == 2 and "style_mask: 2 mask(s) for 1 style image(s)" in twice.stderr
    both = subprocess.run(
        [*common, "--preserve-colors", "--color-mode", "match"], cwd=ROOT, capture_output=True, text=True
    )
    assert both.returncode == 2 and "contradicts color_mode=match" in both.stderr


def test_nst_run_look(tmp_path):
    (tmp_path / "c.png").write_bytes(make_image(64, 64, seed=1))
    (tmp_path / "s.png").write_bytes(make_image(64, 64, seed=2))
    pictures = []
    for look in ("subtle", "texture"):
        out = tmp_path / f"{look}.png"
        done = subprocess.run(
            [
                *NST,
                "run",
                "--content",
                str(tmp_path / "c.png"),
                "--style",
                str(tmp_path / "s.png"),
                "--output",
                str(out),
                "--look",
                look,
                "--max-size",
                "64",
                "--steps",
                "3",
                "--seed",
                "1",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        pictures.append(Image.open(out).tobytes())
    assert pictures[0] != pictures[1]
    unknown = subprocess.run([*NST, "run", "--look", "impressionist"], cwd=ROOT, capture_output=True, text=True)
    assert unknown.returncode == 2 and "painterly" in unknown.stderr


def test_from_keeps_the_recorded_knobs_unless_a_new_look_is_given():
    recorded = {"params": TransferParams(look="painterly", steps=7, seed=5).to_dict()}
    same = with_recorded(TransferParams.model_validate({"max_size": 96}), recorded)
    assert same.look == "painterly" and same.style_weight == LOOKS["painterly"]["style_weight"]
    assert (same.steps, same.seed) == (7, 5)
    assert same.max_size == 96
    subtle = with_recorded(TransferParams.model_validate({"look": "subtle"}), recorded)
    assert subtle.look == "subtle" and subtle.style_weight == LOOKS["subtle"]["style_weight"]
    assert subtle.style_layer_weights == DEFAULTS.style_layer_weights
    assert (subtle.steps, subtle.seed) == (7, 5)


def test_nst_run_paints_a_clip_with_its_sound(tmp_path):
    from tests.clips import make_clip, read_frames, sound_seconds

    make_clip(tmp_path / "clip.mp4", frames=4, fps=4)
    (tmp_path / "s.png").write_bytes(make_image(64, 64, seed=2))
    out = tmp_path / "out.mp4"
    inputs = ["--content", str(tmp_path / "clip.mp4"), "--style", str(tmp_path / "s.png"), "--output", str(out)]
    done = subprocess.run(
        [*NST, "run", *inputs, "--max_size", "64", "--steps", "3", "--frame-steps", "2", "--seed", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "4 of 4 frames" in done.stdout
    frames = read_frames(out)
    assert len(frames) == 4 and frames[0].size == (64, 48)
    assert abs(sound_seconds(out) - 1.0) < 0.1
    info = subprocess.run([*NST, "info", str(out)], cwd=ROOT, capture_output=True, text=True, check=True)
    record = json.loads(info.stdout)
    assert record["frames"] == 4 and record["params"]["frame_steps"] == 2
    assert provenance.read((tmp_path / "out.poster.png").read_bytes()) == record
