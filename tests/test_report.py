"""report.html: self-contained, numbers that match metrics.json, the data summary, every plot; rendered by Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

import dlrun.run.report as report
from dlrun.core.errors import RunError
from dlrun.metrics.names import format_value

from conftest import FAST, merge, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """The parts of a report a test checks: images, scripts, links and metric cells."""

    def __init__(self):
        super().__init__()
        self.images, self.scripts, self.links, self.cells = [], 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "script":
            self.scripts += 1
        self.links.extend(v for k, v in attrs.items() if k in ("href", "src") and v and not v.startswith("data:"))
        if tag == "td" and "data-value" in attrs:
            self.cells.append(float(attrs["data-value"]))


def parse(path):
    page = Page()
    page.feed(path.read_text())
    return page


def test_report_is_self_contained_with_every_plot(finished_runs):
    for run in finished_runs.values():
        page = parse(run / "report.html")
        assert page.scripts == 0 and page.links == []  # nothing fetched, nothing executed
        assert len(page.images) == len(list((run / "plots").glob("*.png"))) >= 4
        assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
        assert "http://" not in (run / "report.html").read_text() and "https://" not in (run / "report.html").read_text()


def test_report_metrics_match_metrics_json(finished_runs):
    for run in finished_runs.values():
        metrics = json.loads((run / "metrics.json").read_text())
        html = (run / "report.html").read_text()
        expected = [value for split in ("train", "val", "test") for per_target in [metrics[split]]
                    for values in per_target.values() for value in values.values() if value is not None]
        assert sorted(parse(run / "report.html").cells) == sorted(expected)
        for value in expected:
            assert f">{format_value(value)}</td>" in html


def test_report_shows_the_data_summary_config_and_warnings(finished_runs):
    run = finished_runs["classification"]
    info = json.loads((run / "run.json").read_text())
    html = (run / "report.html").read_text()
    rows = info["data"]["rows"]
    assert f"train {rows['train']}, val {rows['val']}, test {rows['test']}" in html
    assert f"{info['data']['features_in']} columns -&gt; {info['data']['features_encoded']} after encoding" in html
    assert "species classes (train)" in html and "<td>missing (train)</td><td>none</td>" in html
    assert (run / "config.yaml").read_text().splitlines()[0] in html
    assert "No training problems detected" in html  # this small run trains healthily
    regression = (finished_runs["regression"] / "report.html").read_text()
    assert "price range (train)" in regression and "euros" in regression and "size 3, city 1 imputed" in regression  # the training rows of the fixture


def test_report_command_rebuilds_the_report(finished_runs, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_runs["regression"], run)
    (run / "report.html").unlink()
    shutil.rmtree(run / "plots")
    result = run_cli("report", run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run / "report.html")
    assert len(parse(run / "report.html").images) == 4


def test_report_of_a_folder_that_is_not_a_run_is_an_error(tmp_path):
    with pytest.raises(RunError, match="is not a dlrun run directory"):
        report.build_report(tmp_path)
    result = run_cli("report", tmp_path / "nowhere")
    assert result.returncode == 2 and "Error:" in result.stderr and "Traceback" not in result.stderr


def test_a_failing_report_is_a_warning_and_the_run_completes(tmp_path, classification_csv, monkeypatch):
    import dlrun
    from dlrun.config.load import validate_config

    def broken(*args, **kwargs):
        raise OSError("disk says no")

    monkeypatch.setattr(report, "render", broken)
    run = dlrun.train(validate_config(merge(FAST, {"data": {"path": str(classification_csv), "target": "species"}, "report": True})), tmp_path)
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["status"] == "completed" and (run.run_dir / "metrics.json").is_file()
    assert info["warnings"] == ["report.html was not written (OSError: disk says no)"]
    assert not (run.run_dir / "report.html").exists()


# The report has no scripts; this one is added to a copy only, to ask the browser whether each image decoded.
PROBE = """<script>
window.addEventListener('load', () => {
  const sizes = Array.from(document.images).map(img => img.complete ? img.naturalWidth : 0);
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(sizes);
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium package)")
def test_chromium_renders_the_report_with_every_image_and_the_metrics(finished_runs, tmp_path):
    run = finished_runs["classification"]
    probe = tmp_path / "probed.html"
    probe.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*browser, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    sizes = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1))
    assert len(sizes) == len(list((run / "plots").glob("*.png"))) and all(width >= 400 for width in sizes)
    accuracy = json.loads((run / "metrics.json").read_text())["test"]["species"]["accuracy"]
    assert "<h2>Metrics</h2>" in dom and f">{format_value(accuracy)}</td>" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1200,2000", (run / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50  # text and pictures, not a blank page


def test_the_dropout_picture_joins_the_report_once_drawn(finished_runs, tmp_path):
    from dlrun.probe.explain import explain_dropout

    run = tmp_path / "copy"
    shutil.copytree(finished_runs["classification"], run)
    explain_dropout(run, n_rows=3, n_passes=5)
    result = report.build_report(run)
    page = parse(result.path)
    assert len(page.images) == len(result.plots) + 1 and 'alt="dropout"' in result.path.read_text()


@pytest.mark.parametrize("damage", ["metrics.json", "config.yaml", "diagnostics.csv", "metrics.csv", "predictions.csv"])
def test_a_damaged_run_file_is_an_error_or_a_warning_never_a_traceback(finished_runs, tmp_path, damage):
    run = tmp_path / "copy"
    shutil.copytree(finished_runs["regression"], run)
    (run / damage).write_bytes(b"\xff\xfe[[garbage")
    try:
        result = report.build_report(run)
    except RunError as exc:
        assert damage in ("metrics.json", "config.yaml") and "damaged" in str(exc)
    else:
        assert damage not in ("metrics.json", "config.yaml") and any(damage in w or "not drawn" in w for w in result.warnings)
        assert result.path.is_file()
