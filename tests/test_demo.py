"""The HTML page builder (parsed back as XML) and the demo end to end with tiny settings."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from blurfield import html

SVG = "{http://www.w3.org/2000/svg}"


def _points(poly: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in poly.get("points").split()]


def _plot_rect(svg: ET.Element) -> tuple[float, float, float, float]:
    r = svg.find(f"{SVG}rect")
    x, y, w, h = (float(r.get(k)) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


# --------------------------------------------------------------------------- page builder


def test_page_is_well_formed_and_escapes_text():
    rows = [{"name": "<b>&", "psnr": 23.456}, {"name": "x", "extra": float("nan")}]
    doc = html.page("a <title>", html.section("s & t", html.table(rows)),
                    html.image_grid([("pics/a b.png", "caption <1>"), ("c.png", "")]))
    root = ET.fromstring(doc.split("\n", 1)[1])  # after the doctype line
    assert root.find("head/title").text == "a <title>"
    trs = root.findall(".//table/tr")
    assert [th.text for th in trs[0]] == ["name", "psnr", "extra"]  # union, first-seen order
    assert [td.text for td in trs[1]] == ["<b>&", "23.46", None]  # missing cell empty
    assert trs[1][1].get("class") == "num" and trs[1][0].get("class") is None
    assert trs[2][2].text == "\u2014"  # NaN
    figs = root.findall(".//figure")
    assert [f.find("a/img").get("src") for f in figs] == ["pics/a b.png", "c.png"]
    assert figs[0].find("figcaption").text == "caption <1>"
    assert figs[1].find("figcaption") is None


def test_text_table_aligns_columns():
    out = html.text_table([{"id": "a", "v": 1.5}, {"id": "long", "v": 10.25}]).splitlines()
    assert out[0].split() == ["id", "v"]
    assert len({len(line) for line in out}) == 1  # every line padded to the same width
    assert out[2].endswith(" 1.50") and out[3].endswith("10.25")


@pytest.mark.parametrize("lo,hi", [(0, 10), (0.013, 0.0171), (-3.2, 47.0), (5, 5), (1e-4, 3e3)])
def test_nice_ticks_cover_the_range_with_round_equal_steps(lo, hi):
    t = html.nice_ticks(lo, hi)
    assert t[0] <= lo and t[-1] >= hi and 2 <= len(t) <= 12
    steps = {round(b - a, 9) for a, b in zip(t, t[1:])}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-6 for m in (1, 2, 2.5, 5))


def test_line_chart_maps_points_linearly_inside_the_plot():
    xs = [0.0, 1.0, 4.0, 10.0]
    ys = [3.0, 1.0, 2.0, 0.5]
    svg = ET.fromstring(html.line_chart({"train": list(zip(xs, ys)), "val": [(0, 1), (10, 2)]},
                                        title="loss", xlabel="epoch",
                                        vlines=[(4.0, "switch"), (99.0, "outside")]))
    polys = svg.findall(f"{SVG}polyline")
    assert [p.get("data-name") for p in polys] == ["train", "val"]
    pts = _points(polys[0])
    x0, y0, x1, y1 = _plot_rect(svg)
    assert all(x0 <= px <= x1 and y0 <= py <= y1 for px, py in pts)
    # linear in x and y: pixel differences proportional to data differences (y flipped)
    sx = (pts[-1][0] - pts[0][0]) / (xs[-1] - xs[0])
    sy = (pts[-1][1] - pts[0][1]) / (ys[-1] - ys[0])
    assert sx > 0 and sy < 0
    for (px, py), x, y in zip(pts, xs, ys):
        assert px == pytest.approx(pts[0][0] + sx * (x - xs[0]), abs=0.11)
        assert py == pytest.approx(pts[0][1] + sy * (y - ys[0]), abs=0.11)
    # a vertical marker at x = 4 passes through the data point at x = 4; none outside
    vl = [e for e in svg.findall(f"{SVG}line") if e.get("class") == "vline"]
    assert len(vl) == 1 and float(vl[0].get("x1")) == pytest.approx(pts[2][0], abs=0.11)
    # the data range lies within the axes: x from 0 to 10 spans the whole width (ticks 0, 10)
    assert pts[0][0] == pytest.approx(x0, abs=0.06) and pts[-1][0] == pytest.approx(x1, abs=0.06)


def test_line_chart_log_axis_and_gaps():
    series = {"a": [(0, 1.0), (1, 10.0), (2, 100.0), (3, float("nan")), (4, 1.0), (5, 0.1)]}
    svg = ET.fromstring(html.line_chart(series, log_y=True))
    polys = svg.findall(f"{SVG}polyline")
    assert len(polys) == 2  # the NaN splits the line
    p = _points(polys[0])
    # decades are equally spaced on a log axis
    assert p[0][1] - p[1][1] == pytest.approx(p[1][1] - p[2][1], abs=0.11)
    q = _points(polys[1])
    assert q[0][1] == pytest.approx(p[0][1], abs=0.06)  # y = 1 again at the same height
    empty = ET.fromstring(html.line_chart({"a": [(0, float("nan"))]}))
    assert empty.find(f"{SVG}polyline") is None
    assert "no data" in "".join(empty.itertext())


def test_write_page_is_atomic_and_leaves_no_temp(tmp_path):
    path = html.write_page(tmp_path / "sub" / "index.html", html.page("t", "<p>x</p>"))
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]


# --------------------------------------------------------------------------- the demo


def _png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def _psnr(a, b) -> float:
    return float(10 * math.log10(1.0 / ((a - b) ** 2).mean()))


def test_demo_quick_end_to_end(tmp_path, capsys):
    """Shards -> 2 training steps -> estimate/deblur -> page, all tiny (about 15 s)."""
    from demo import pipeline as demo

    out = tmp_path / "demo"
    result = demo.run(demo.quick_settings(out))
    page = (out / "index.html").read_text()
    root = ET.fromstring(page.split("\n", 1)[1])
    # every picture on the page exists
    srcs = [img.get("src") for img in root.iter("img")]
    assert srcs and all((out / s).is_file() for s in srcs), srcs
    for name in ("inputs/clock.png", "results/clock_restored.png", "results/clock_kernels.png"):
        assert name in srcs
    # the PSNR table: one synthetic sample and the mean; the blurry column recomputed here
    synth = [im for im in result["images"] if im.reference is not None]
    assert len(synth) == 1
    stem = synth[0].stem
    rows = result["rows"]
    assert [r["sample"] for r in rows] == [stem, "mean"]
    blurry, truth = _png(out / "inputs" / f"{stem}.png"), _png(out / "truth" / f"{stem}.png")
    assert rows[0]["blurry"] == pytest.approx(_psnr(blurry, truth), abs=0.05)
    restored_gt = _png(out / "results" / "true_field" / f"{stem}_restored.png")
    assert rows[0]["restored, true field"] == pytest.approx(_psnr(restored_gt, truth), abs=0.05)
    # restoring with the exact field beats leaving the image blurry
    assert rows[0]["restored, true field"] > rows[0]["blurry"]
    cells = [td.text for td in root.iter("td")]
    assert stem in cells and f"{rows[0]['blurry']:.2f}" in cells
    # training curves: an inline SVG with at least one line, from the run's metrics.csv
    assert (out / "runs" / "tiny" / "metrics.csv").is_file()
    assert root.findall(f".//{SVG}svg") and root.findall(f".//{SVG}polyline")
    printed = capsys.readouterr().out
    assert "PSNR (dB)" in printed and stem in printed


def test_demo_model_choice_and_errors(tmp_path, monkeypatch, capsys):
    from demo import pipeline as demo

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    s = demo.quick_settings(tmp_path)
    s.model = "shipped"
    monkeypatch.setattr(demo, "shipped_model_path", lambda: tmp_path / "none.pt")
    with pytest.raises(demo.DemoError, match="no estimator"):
        demo.choose_model(s, run_dir)
    (run_dir / "estimator.pt").write_bytes(b"x")
    ckpt, text = demo.choose_model(s, run_dir)  # no shipped model: the trained one, said so
    assert ckpt == str(run_dir / "estimator.pt") and "no shipped model" in text
    (tmp_path / "none.pt").write_bytes(b"x")
    assert demo.choose_model(s, run_dir)[0] is None  # shipped: load_estimator() with no path
    # one shard sample of the quick set lands in train: no val sample, a one-line error
    assert demo.main(["--quick", "--samples", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no train or no val sample" in err[0]
