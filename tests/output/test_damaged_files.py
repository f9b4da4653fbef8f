"""Every malformed result file gets a genattrib error naming `path` (not a KeyError, IndexError,
RecursionError or a load that crashes later), and `genattrib show` prints one line and exits 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genattrib.cli import main
from genattrib.errors import InvalidArgumentError
from genattrib.output import FeatureAttributionOutput


@pytest.fixture(scope="module")
def saved(tiny_llama, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("damaged")
    out = tiny_llama.attribute("The capital of France is", " Paris")
    out.save(folder / "ok.json")
    out.save(folder / "ok.safetensors")
    return folder


def _json_variant(folder: Path, name: str, change) -> Path:
    doc = json.loads((folder / "ok.json").read_text())
    change(doc["meta"]["sequences"][0])
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


DAMAGE = {
    "missing_key": lambda seq: seq.pop("tokens"),
    "count_mismatch": lambda seq: seq.__setitem__("tokens", ["a"]),
    "huge_prompt_length": lambda seq: seq.__setitem__("prompt_length", 10**9),
    "negative_step_start": lambda seq: seq.__setitem__("step_start", -3),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_json_content_is_a_genattrib_error(saved, name):
    path = _json_variant(saved, name, DAMAGE[name])
    with pytest.raises(InvalidArgumentError, match="damaged") as info:
        FeatureAttributionOutput.load(path)
    assert info.value.argument == "path"


def test_damaged_containers_are_genattrib_errors(saved):
    deep = saved / "deep.json"
    deep.write_text('{"format": "genattrib", "meta": ' + "[" * 200_000 + "]" * 200_000 + "}")
    data = (saved / "ok.safetensors").read_bytes()
    truncated = saved / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    huge_header = saved / "huge_header.safetensors"
    huge_header.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    for path in (deep, truncated, huge_header):
        with pytest.raises(InvalidArgumentError) as info:
            FeatureAttributionOutput.load(path)
        assert info.value.argument == "path", path


@pytest.mark.parametrize("declared", ["past_the_end", "over_the_cap"])
def test_the_header_size_is_checked_before_the_header_is_parsed(saved, monkeypatch, declared):
    from genattrib.output import serialization

    data = (saved / "ok.safetensors").read_bytes()
    real = int.from_bytes(data[:8], "little")
    if declared == "past_the_end":
        path = saved / "header_past_end.safetensors"
        path.write_bytes((len(data)).to_bytes(8, "little") + data[8:])
    else:
        path = saved / "ok_copy.safetensors"
        path.write_bytes(data)
        monkeypatch.setattr(serialization, "MAX_HEADER_BYTES", real - 1)

    def no_parsing(*args, **kwargs):
        raise AssertionError("the header was parsed before its size was checked")

    monkeypatch.setattr(serialization.json, "loads", no_parsing)
    with pytest.raises(InvalidArgumentError, match="byte safetensors header") as info:
        FeatureAttributionOutput.load(path)
    assert info.value.argument == "path"


def test_show_on_a_damaged_file_prints_one_line_and_exits_2(saved, capsys):
    path = _json_variant(saved, "for_cli", DAMAGE["missing_key"])
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged" in err and "Traceback" not in err


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_a_permission_error_while_reading_is_reported_as_such(saved, monkeypatch, suffix):
    """The same report where chmod cannot show it (root reads any file, as in CI): the error the
    OS raises on open is injected, so this runs everywhere; the test below uses a real chmod."""
    path = saved / f"ok{suffix}"
    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: refuse(self).read())
    with pytest.raises(InvalidArgumentError, match="permission") as info:
        FeatureAttributionOutput.load(path)
    assert info.value.argument == "path"


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root reads any file (the injected test above covers root)"
)
def test_an_unreadable_file_is_reported_as_a_permission_problem(saved):
    path = saved / "locked.json"
    path.write_bytes((saved / "ok.json").read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(InvalidArgumentError, match="permission"):
            FeatureAttributionOutput.load(path)
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize(
    "option,value,needle",
    [
        ("--save", "result.txt", "format"),
        ("--html", "page.txt", ".html"),
        ("--save", "blocker/result.json", "is a file"),
        ("--html", "blocker/page.html", "is a file"),
    ],
)
def test_bad_output_paths_are_refused_before_the_run(tmp_path, capsys, monkeypatch, option, value, needle):
    import genattrib

    (tmp_path / "blocker").write_text("a file, not a folder")
    monkeypatch.setattr(genattrib, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    code = main(["attribute", "The capital of France is", option, str(tmp_path / value)])
    assert code == 2 and needle in capsys.readouterr().err
