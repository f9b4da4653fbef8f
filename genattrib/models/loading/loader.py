"""``load_model``: wrap any Hugging Face causal LM or encoder-decoder (seq2seq) LM for attribution.

Example:
    >>> model = load_model()                                        # embedded default model  # doctest: +SKIP
    >>> options = dict(method="integrated_gradients", dtype="bfloat16", device_map="auto")
    >>> model = load_model("path/or/hub-id", **options)  # doctest: +SKIP
    >>> model = load_model((hf_model, tokenizer))                   # already loaded objects
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from genattrib.engine.seq2seq_forward import is_encoder_decoder
from genattrib.errors import InvalidArgumentError
from genattrib.methods import method_class
from genattrib.models.attribution_model import AttributionModel
from genattrib.models.loading.default_model import DEFAULT_MODEL_NAME, default_model_folder
from genattrib.models.loading.dispatch import dispatch_kwargs
from genattrib.validation import check_positive_int

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}
DTYPE_NAMES = tuple(name for name, dtype in _DTYPES.items() if str(dtype) == f"torch.{name}")
"""The model dtypes by torch's own name (``float32``, ``bfloat16``, ``float16``): the command line's choices."""


def _dtype(value: Any) -> Any:
    if value is None or isinstance(value, torch.dtype) or value == "auto":
        return value
    if isinstance(value, str) and value in _DTYPES:
        return _DTYPES[value]
    raise InvalidArgumentError(
        "dtype", f"unknown dtype {value!r}", f"use a torch.dtype or one of: auto, {', '.join(_DTYPES)}"
    )


def check_generative(model: nn.Module, source: object) -> None:
    """Refuse a model genattrib cannot explain, before any work: an encoder-decoder model must be a
    seq2seq LM (an encoder, a decoder and an LM head, as ``AutoModelForSeq2SeqLM`` loads), not a bare
    encoder or a base model.

    Example:
        >>> from transformers import T5Config, T5Model
        >>> check_generative(T5Model(T5Config(d_model=8, d_ff=8, num_layers=1, num_heads=1)), "t5-base-model")
        Traceback (most recent call last):
        genattrib.errors.InvalidArgumentError: Invalid `source`: 't5-base-model' is an encoder-decoder ...
    """
    if not is_encoder_decoder(model):
        return
    has = lambda name: callable(getattr(model, name, None))  # noqa: E731
    if has("get_encoder") and has("get_decoder") and has("generate") and model.get_output_embeddings() is not None:
        return
    kind = getattr(model.config, "model_type", "") or type(model.config).__name__
    raise InvalidArgumentError(
        "source",
        f"{source!r} is an encoder-decoder ({kind}) model without a decoder and an LM head ({type(model).__name__})",
        "load it as a seq2seq LM: AutoModelForSeq2SeqLM (T5ForConditionalGeneration, BartForConditionalGeneration, "
        "MarianMTModel ...), or pass its hub id or folder",
    )


def _from_pretrained(
    location: str,
    *,
    gguf_file: str | None,
    dtype: Any,
    dispatch: dict[str, Any],
    revision: str | None,
    trust_remote_code: bool,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if gguf_file:
        common["gguf_file"] = gguf_file
    try:
        seq2seq = False
        if not gguf_file:  # a JSON file; a GGUF's config takes as long to read as the weights
            seq2seq = bool(getattr(AutoConfig.from_pretrained(location, **common), "is_encoder_decoder", False))
        tokenizer = AutoTokenizer.from_pretrained(location, **common)
        kwargs = dict(common, **model_kwargs, **dispatch)
        if dtype is not None:
            kwargs["dtype"] = dtype
        auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM  # T5, BART, Marian, mT5, NLLB ...
        model = auto.from_pretrained(location, **kwargs)
    except InvalidArgumentError:
        raise
    except (OSError, ValueError) as error:  # ValueError: transformers 4.x rejects bad repo ids
        raise InvalidArgumentError(
            "source",
            f"could not load {location!r} ({error})",
            "pass an existing local folder, a .gguf file, a reachable hub id, or (model, tokenizer)",
        ) from error
    check_generative(model, location)
    model.eval()
    return model, tokenizer


def load_model(
    source: str | Path | tuple[nn.Module, Any] | nn.Module | None = None,
    method: str = "saliency",
    *,
    tokenizer: Any = None,
    dtype: torch.dtype | str | None = None,
    device_map: str | int | torch.device | dict[str, Any] | None = None,
    max_memory: dict[int | str, int | str] | None = None,
    offload_folder: str | Path | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    max_rows: int | None = None,
    **model_kwargs: Any,
) -> AttributionModel:
    """An :class:`AttributionModel` for ``source``.

    ``source`` is ``None`` (the embedded default SmolLM2-135M-Instruct), a hub id or local folder,
    a ``.gguf`` file, a ``(model, tokenizer)`` pair, or a model with ``tokenizer=``. Models loaded
    with ``device_map`` are never moved afterwards: accelerate splits them across GPUs, CPU RAM
    (``max_memory`` caps each device) and disk (``offload_folder``), and every method runs on them
    as it does on one device (see docs/scale.md).
    """
    method_class(method)  # unknown names fail before any weights load
    check_positive_int("max_rows", max_rows, "max_rows=64, or None to size chunks from memory", optional=True)
    dtype = _dtype(dtype)
    dispatch = dispatch_kwargs(device_map, max_memory, offload_folder)
    if isinstance(source, tuple):
        if len(source) != 2:
            raise InvalidArgumentError(
                "source", "a tuple must be (model, tokenizer)", "pass load_model((model, tokenizer))"
            )
        source, tokenizer = source
    if isinstance(source, nn.Module):
        if tokenizer is None:
            raise InvalidArgumentError(
                "tokenizer", "a loaded model was given without its tokenizer", "pass load_model((model, tokenizer))"
            )
        if max_memory is not None or offload_folder is not None:
            raise InvalidArgumentError(
                "max_memory" if max_memory is not None else "offload_folder",
                "applies when genattrib loads the model, but a loaded model was given",
                "dispatch it yourself (from_pretrained(..., device_map=..., offload_folder=...)) or pass its path",
            )
        if not hasattr(source, "get_input_embeddings") or not hasattr(source, "generate"):
            raise InvalidArgumentError(
                "source",
                f"{type(source).__name__} is not a Hugging Face generative model",
                "pass an AutoModelForCausalLM or AutoModelForSeq2SeqLM",
            )
        check_generative(source, type(source).__name__)
        return AttributionModel(source, tokenizer, method, max_rows=max_rows)
    if source is None:
        folder = default_model_folder()
        model, tok = _from_pretrained(
            str(folder),
            gguf_file=None,
            dtype=dtype,
            dispatch=dispatch,
            revision=None,
            trust_remote_code=False,
            model_kwargs=model_kwargs,
        )
        return AttributionModel(model, tok, method, name=DEFAULT_MODEL_NAME, max_rows=max_rows, device_map=device_map)
    if not isinstance(source, (str, Path)):
        raise InvalidArgumentError(
            "source",
            f"cannot load a {type(source).__name__}",
            "pass a hub id, a folder, a .gguf file or (model, tokenizer)",
        )
    path = Path(source)
    is_gguf = path.suffix.lower() == ".gguf"
    if is_gguf and not path.is_file():
        raise InvalidArgumentError(
            "source", f"no GGUF file at {str(path)!r}", "pass the path of an existing .gguf file"
        )
    location, gguf_file = (str(path.parent), path.name) if is_gguf else (str(source), None)
    model, tok = _from_pretrained(
        location,
        gguf_file=gguf_file,
        dtype=dtype,
        dispatch=dispatch,
        revision=revision,
        trust_remote_code=trust_remote_code,
        model_kwargs=model_kwargs,
    )
    return AttributionModel(
        model, tok, method, name=str(source), revision=revision, max_rows=max_rows, device_map=device_map
    )
