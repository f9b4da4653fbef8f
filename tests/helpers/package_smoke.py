"""Use the built package as a user would: ``nox -s package`` runs this script with the python of a fresh
virtual environment where the wheel (not the checkout) is installed, from a temporary folder outside the
repository, with ``python -I`` (no script folder, ``PYTHONPATH`` or user site on ``sys.path``).

It checks, and fails on the first problem:

1. the wheel and sdist in ``--dist`` hold every file of the checkout's package (JS/CSS assets, data
   files, ``py.typed``), the sdist also README.md, LICENSE, pyproject.toml, the tests and examples;
2. ``import genattrib`` comes from the environment's site-packages, not from the checkout;
3. ``genattrib --version`` (the console script) prints the version;
4. the demo (examples/quickstart.py) runs and writes its JSON and HTML;
5. ``genattrib attribute ... --save --html`` and ``genattrib show`` run;
6. a save/load round trip (JSON and safetensors) gives the very same scores, and the HTML page holds
   every CSS/JS asset inline and requests nothing from the network.

Not a pytest module (no ``test_`` prefix): it needs the built wheel and the embedded default model.

    python -I tests/helpers/package_smoke.py --dist DIST_DIR --repo CHECKOUT
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

PROMPT = "The capital of France is"


def _step(message: str) -> None:
    print(f"[package-smoke] {message}", flush=True)


def _package_files(repo: Path) -> set[str]:
    """Paths (``genattrib/...``) of the checkout's package: sources and data, no byte code."""
    root = repo / "genattrib"
    return {
        f"genattrib/{p.relative_to(root).as_posix()}"
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def check_archives(dist: Path, repo: Path, version: str) -> None:
    wheels = sorted(dist.glob(f"genattrib-{version}-py3-none-any.whl"))
    sdists = sorted(dist.glob(f"genattrib-{version}.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist in {dist}: {list(dist.iterdir())}"
    expected = _package_files(repo)
    assert "genattrib/py.typed" in expected and "genattrib/render/assets/viewer.js" in expected

    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        info = f"genattrib-{version}.dist-info"
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
        metadata = whl.read(f"{info}/METADATA").decode()
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    stray = sorted(n for n in names if not n.startswith(("genattrib/", f"{info}/")))
    assert not stray, f"the wheel ships files outside the package: {stray[:10]}"
    assert f"{info}/licenses/LICENSE" in names, "the wheel lacks the license file"
    assert re.search(r"^genattrib\s*=\s*genattrib\.cli:main$", entry_points, re.M), entry_points
    assert f"Version: {version}" in metadata and "Requires-Dist: torch" in metadata

    with tarfile.open(sdists[0]) as tar:
        prefix = f"genattrib-{version}/"
        members = {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}
    wanted = expected | {"README.md", "LICENSE", "pyproject.toml", "MANIFEST.in", "conftest.py"}
    wanted |= {"tests/cli/test_cli.py", "tests/helpers/package_smoke.py", "examples/quickstart.py"}
    missing = sorted(wanted - members)
    assert not missing, f"the sdist lacks {missing}"
    assert not any("__pycache__" in m or m.endswith(".pyc") for m in members), "the sdist ships byte code"
    _step(f"archives: {wheels[0].name} ({len(names)} files), {sdists[0].name} ({len(members)} files)")


def check_import_location(repo: Path, version: str) -> None:
    import genattrib

    where = Path(genattrib.__file__).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert site in where.parents, f"genattrib was imported from {where}, not from {site}"
    assert repo.resolve() not in where.parents, f"genattrib was imported from the checkout: {where}"
    assert repo.resolve() not in (Path.cwd().resolve(), *Path.cwd().resolve().parents), "run me outside the checkout"
    assert genattrib.__version__ == version, (genattrib.__version__, version)
    assert (where.parent / "py.typed").is_file()
    _step(f"import genattrib -> {where}")


def _run(*cmd: str | Path) -> str:
    started = time.perf_counter()
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, check=False)
    name = " ".join(str(c) for c in cmd[:3])
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    _step(f"{name} ... ok ({time.perf_counter() - started:.1f} s)")
    return done.stdout


def check_console_script(version: str) -> Path:
    script = Path(sys.executable).parent / "genattrib"
    assert script.is_file(), f"no console script at {script}"
    lines = _run(script, "--version").splitlines()
    assert lines[0] == f"genattrib {version}", lines
    assert lines[1].startswith("torch 2.") and "transformers" in lines[1], lines
    return script


def check_demo(repo: Path) -> None:
    out = _run(sys.executable, "-I", repo / "examples" / "quickstart.py")
    assert "identical: True" in out and "generated:" in out, out[-2000:]
    for name in ("paris.json", "paris.html"):
        assert (Path("artifacts") / name).stat().st_size > 1000, f"the demo did not write artifacts/{name}"


def check_cli(script: Path) -> None:
    _run(script, "attribute", PROMPT, "--max-new-tokens", "4", "--save", "cli.safetensors", "--html", "cli.html")
    shown = _run(script, "show", "cli.safetensors", "--step", "0")
    assert "France" in shown, shown[-2000:]
    check_html(Path("cli.html"))


def check_html(path: Path) -> None:
    from importlib.resources import files

    page = path.read_text(encoding="utf-8")
    assets = files("genattrib.render").joinpath("assets")
    names = sorted(a.name for a in assets.iterdir() if a.name.endswith((".js", ".css")))
    assert len(names) >= 2, names
    for name in names:
        text = assets.joinpath(name).read_text(encoding="utf-8")
        assert text.strip() and text in page, f"{path}: asset {name} is not inline"
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//""", page)
    assert not external, f"{path} requests external resources: {external[:5]}"
    assert "<script src" not in page and "default-src 'none'" in page


def check_round_trip() -> None:
    import torch

    import genattrib

    model = genattrib.load_model()
    out = model.attribute(PROMPT, max_new_tokens=6, step_scores=["probability"])
    seq = out.sequences[0]
    assert 1 <= seq.num_steps <= 6 and seq.scores.isfinite().any(), seq
    for path in (Path("round.json"), Path("round.safetensors")):
        written = out.save(path)
        again = genattrib.FeatureAttributionOutput.load(written)
        assert again.equals(out), f"{path}: the reloaded result differs"
        back = again.sequences[0]
        assert back.tokens == seq.tokens and back.generated_text == seq.generated_text
        torch.testing.assert_close(back.scores, seq.scores, rtol=0, atol=0, equal_nan=True)
    page = out.save_html(Path("round.html"))
    check_html(Path(page))
    _step(f"round trip of {seq.generated_text!r} ({seq.num_steps} steps x {len(seq.tokens)} positions): ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", type=Path, required=True, help="folder with the built wheel and sdist")
    parser.add_argument("--repo", type=Path, required=True, help="the checkout the package was built from")
    args = parser.parse_args()
    started = time.perf_counter()
    version = re.search(r'__version__ = "([^"]+)"', (args.repo / "genattrib" / "version.py").read_text()).group(1)
    check_archives(args.dist, args.repo, version)
    check_import_location(args.repo, version)
    script = check_console_script(version)
    check_demo(args.repo)
    check_cli(script)
    check_round_trip()
    _step(f"all checks passed in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
