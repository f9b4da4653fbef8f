"""A save that fails halfway (here: a real file-size limit, RLIMIT_FSIZE) leaves the earlier good
file as it was, for JSON, safetensors and HTML, and leaves no temporary file behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import genattrib

UNDER_A_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    sys.path.insert(0, "tests/helpers")
    from tiny import make_model, make_tokenizer
    import genattrib

    tok = make_tokenizer()
    model = genattrib.load_model((make_model("llama", tok), tok))
    small = model.attribute("The capital of France is", " Paris")
    big = model.attribute(" ".join(["The capital of France is Paris."] * 8), " It is", keep_granular=True)
    folder = sys.argv[1]
    for suffix in (".json", ".safetensors", ".html"):
        path = f"{folder}/result{suffix}"
        (small.save_html if suffix == ".html" else small.save)(path)
    sizes = [len(open(f"{folder}/result{s}", "rb").read()) for s in (".json", ".safetensors", ".html")]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit: an OSError (EFBIG), not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (min(sizes) + 512, resource.RLIM_INFINITY))
    for suffix in (".json", ".safetensors", ".html"):
        path = f"{folder}/result{suffix}"
        try:
            (big.save_html if suffix == ".html" else big.save)(path)
            print("SAVED", suffix)
        except OSError as error:
            print("FAILED", suffix, error.errno)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_failed_save_keeps_the_earlier_file(tmp_path: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GENATTRIB_TYPECHECK": "0"}
    done = subprocess.run(
        [sys.executable, "-c", UNDER_A_SIZE_LIMIT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("FAILED") == 3, done.stdout  # every bigger write hit the limit
    before = genattrib.FeatureAttributionOutput.load(tmp_path / "result.json")
    assert before.sequences[0].generated_text == " Paris"  # the earlier result, whole
    assert genattrib.FeatureAttributionOutput.load(tmp_path / "result.safetensors").sequences[0].num_steps == (
        before.sequences[0].num_steps
    )
    html = (tmp_path / "result.html").read_text(encoding="utf-8")
    assert html.rstrip().endswith("</html>") and "Paris" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.html", "result.json", "result.safetensors"]


def test_save_creates_missing_folders(tiny_llama, tmp_path: Path):
    out = tiny_llama.attribute("The capital of France is", " Paris")
    path = out.save(tmp_path / "new" / "deeper" / "result.json")
    assert genattrib.FeatureAttributionOutput.load(path).sequences[0].generated_text == " Paris"
