"""`nst run` end to end, as a subprocess on generated images."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from tests.conftest import ROOT, make_image

NST = [sys.executable, "-m", "nst_cli.main"]


def test_nst_run_writes_picture(tmp_path):
    (tmp_path / "c.png").write_bytes(make_image(90, 60, seed=1))
    (tmp_path / "s1.jpg").write_bytes(make_image(64, 64, seed=2, fmt="JPEG"))
    (tmp_path / "s2.png").write_bytes(make_image(50, 70, seed=3))
    out = tmp_path / "out.webp"
    done = subprocess.run([*NST, "run", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "s1.jpg"),
                           "--style", str(tmp_path / "s2.png"), "--style-blend", "0.7,0.3", "--output", str(out),
                           "--max_size", "64", "--steps", "4", "--style_weight", "1e3", "--content_weight", "1",
                           "--save-every", "2", "--seed", "1"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    image = Image.open(out)
    assert image.format == "WEBP" and image.size == (64, 43)
    assert (tmp_path / "out.0002.webp").is_file() and (tmp_path / "out.0004.webp").is_file()


def test_nst_run_takes_print_sizes(tmp_path):
    # Two steps of a 4096 px plan land on its two coarsest scales; the picture comes out at the print size.
    (tmp_path / "c.png").write_bytes(make_image(90, 60, seed=1))
    (tmp_path / "s.png").write_bytes(make_image(64, 64, seed=2))
    out = tmp_path / "print.png"
    done = subprocess.run([*NST, "run", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "s.png"),
                           "--output", str(out), "--max-size", "4096", "--steps", "2", "--memory-gb", "3"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (4096, 2731)


def test_nst_run_unreadable_input_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    done = subprocess.run([*NST, "run", "--content", str(tmp_path / "bad.png"), "--output", str(tmp_path / "o.png")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "nst run:" in done.stderr
    assert not (tmp_path / "o.png").exists()


def test_nst_run_bad_parameter(tmp_path):
    done = subprocess.run([*NST, "run", "--steps", "0", "--output", str(tmp_path / "o.png")], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--steps" in done.stderr and "Traceback" not in done.stderr


def test_nst_run_look(tmp_path):
    (tmp_path / "c.png").write_bytes(make_image(64, 64, seed=1))
    (tmp_path / "s.png").write_bytes(make_image(64, 64, seed=2))
    pictures = []
    for look in ("subtle", "texture"):
        out = tmp_path / f"{look}.png"
        done = subprocess.run([*NST, "run", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "s.png"),
                               "--output", str(out), "--look", look, "--max-size", "64", "--steps", "3", "--seed", "1"],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        pictures.append(Image.open(out).tobytes())
    assert pictures[0] != pictures[1]
    unknown = subprocess.run([*NST, "run", "--look", "impressionist"], cwd=ROOT, capture_output=True, text=True)
    assert unknown.returncode == 2 and "painterly" in unknown.stderr
