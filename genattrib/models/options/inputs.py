"""Validate and tokenize what the user passed: prompts, chats, forced and contrast targets.

Example:
    >>> normalize_prompts("Hello", chat=False)
    ['Hello']
    >>> normalize_prompts("Hi", chat=True)
    [[{'role': 'user', 'content': 'Hi'}]]
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.validation import is_int

Prompt = str | list[dict[str, str]]


def _is_message_list(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(m, dict) for m in value)


def normalize_prompts(inputs: object, chat: bool) -> list[Prompt]:
    """A list of prompts, each a string or a list of chat messages."""
    if isinstance(inputs, str):
        prompts: list[Any] = [inputs]
    elif _is_message_list(inputs):
        prompts = [inputs]
    elif isinstance(inputs, (list, tuple)) and len(inputs) > 0:
        prompts = list(inputs)
    else:
        raise InvalidArgumentError(
            "inputs",
            f"expected a prompt string, a list of strings or chat messages, got {inputs!r}",
            "pass e.g. 'The capital of France is'",
        )
    out: list[Prompt] = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if not p.strip():
                raise InvalidArgumentError("inputs", f"prompt {i} is empty", "pass non-empty text")
            _check_encodable(p, f"prompt {i}")
            out.append([{"role": "user", "content": p}] if chat else p)
        elif _is_message_list(p):
            for m in p:
                if "role" not in m or "content" not in m:
                    raise InvalidArgumentError(
                        "inputs",
                        f"chat message {m!r} lacks 'role' or 'content'",
                        "use {'role': 'user', 'content': '...'}",
                    )
                if not isinstance(m["role"], str) or not isinstance(m["content"], str | list):
                    raise InvalidArgumentError(
                        "inputs",
                        f"chat message {m!r} of chat {i}: 'role' must be a string and 'content' a string "
                        "(or a list of content parts)",
                        "use {'role': 'user', 'content': '...'}",
                    )
                if isinstance(m["content"], str):
                    _check_encodable(m["content"], f"a message of chat {i}")
            if not any(str(m["content"]).strip() for m in p):
                raise InvalidArgumentError(
                    "inputs", f"chat {i} has only empty messages", "give at least one message some text"
                )
            out.append(p)
        else:
            raise InvalidArgumentError(
                "inputs", f"prompt {i} is a {type(p).__name__}", "pass strings or lists of {'role','content'} dicts"
            )
    return out


def _check_encodable(text: str, what: str) -> None:
    """Refuse text a tokenizer cannot encode (a lone surrogate such as ``"\\ud800"`` is not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidArgumentError(
            "inputs",
            f"{what} holds {text[error.start : error.end]!r} at character {error.start}, which is not valid "
            "Unicode text (a lone surrogate, e.g. from a bad decode)",
            "decode the source with errors='replace', or drop those characters",
        ) from error


def tokenize_prompt(tokenizer: Any, prompt: Prompt) -> Int[Tensor, " prompt"]:
    """Token ids of one prompt (chat template applied to message lists)."""
    if isinstance(prompt, str):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    else:
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidArgumentError(
                "chat", "the tokenizer has no chat template", "pass plain text prompts, or set tokenizer.chat_template"
            )
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) == 0:
        raise InvalidArgumentError("inputs", "the prompt tokenizes to no tokens", "pass text the tokenizer can encode")
    return torch.tensor(ids, dtype=torch.long)


def _is_id_list(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return value.ndim == 1 and not value.is_floating_point()
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(is_int(i) for i in value)


def normalize_targets(target: object, n_prompts: int, argument: str = "target") -> list[str | Tensor] | None:
    """One target per prompt (text, or token ids kept as ids), or None."""
    if target is None:
        return None
    if isinstance(target, str) or _is_id_list(target):
        targets: list[Any] = [target] * n_prompts
    elif isinstance(target, (list, tuple)):
        targets = list(target)
    else:
        targets = []
    if not targets or not all(isinstance(t, str) or _is_id_list(t) for t in targets):
        raise InvalidArgumentError(
            argument, f"expected text or token ids (one per prompt), got {target!r}", f"pass e.g. {argument}=' Paris'"
        )
    if len(targets) != n_prompts:
        raise InvalidArgumentError(
            argument, f"{len(targets)} targets for {n_prompts} prompts", "pass one target per prompt"
        )
    out: list[str | Tensor] = []
    for t in targets:
        if isinstance(t, str) and t == "":
            raise InvalidArgumentError(
                argument,
                "the forced continuation is empty",
                "pass the text to explain, e.g. ' Paris', or omit it to generate",
            )
        if isinstance(t, torch.Tensor) and t.numel() == 0:
            raise InvalidArgumentError(argument, "the forced continuation has no token ids", "pass at least one id")
        out.append(t if isinstance(t, str) else torch.as_tensor(t, dtype=torch.long).clone())
    return out


def tokenize_continuation(
    tokenizer: Any, prompt_ids: Int[Tensor, " prompt"], text: str | Tensor, argument: str = "target"
) -> Int[Tensor, " generated"]:
    """Ids of ``text`` as a continuation of ``prompt_ids``, checked to decode back to ``text``.
    Token ids are used as given (checked against the vocabulary)."""
    if isinstance(text, Tensor):
        vocab = len(tokenizer)
        if int(text.min()) < 0 or int(text.max()) >= vocab:
            raise InvalidArgumentError(argument, f"token ids must be in [0, {vocab})", "pass ids of this tokenizer")
        return text
    prompt_text = tokenizer.decode(prompt_ids.tolist(), clean_up_tokenization_spaces=False)
    joint = tokenizer(prompt_text + text, add_special_tokens=False)["input_ids"]
    plain = [int(i) for i in prompt_ids.tolist()]
    bos = getattr(tokenizer, "bos_token_id", None)
    body = plain[1:] if plain and bos is not None and plain[0] == bos and (not joint or joint[0] != bos) else plain
    if joint[: len(body)] == body and len(joint) > len(body):
        ids = joint[len(body) :]
    else:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InvalidArgumentError(argument, f"{text!r} tokenizes to no tokens", "pass a longer continuation")
    decoded = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
    if decoded != text:
        raise InvalidArgumentError(
            argument,
            f"{text!r} does not tokenize as given (it decodes back as {decoded!r})",
            "pass text that round-trips through the tokenizer, e.g. without a space the tokenizer drops",
        )
    return torch.tensor(ids, dtype=torch.long)


def context_window(config: Any) -> int | None:
    """Maximum sequence length of the model, when its config says."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def chat_token_roles(messages: list[dict[str, str]], tokens: list[str], prompt_length: int) -> list[str]:
    """Role of every token: the message it belongs to (``system``/``user``/...), ``template``
    for text the chat template adds (markers, role names, a default system prompt),
    ``generated`` after the prompt. Found by locating each message's
    content, in order, in the decoded prompt text.

    Example:
        >>> chat_token_roles([{"role": "user", "content": "Hi"}], ["<u>", "Hi", "</u>", "Yo"], 3)
        ['template', 'user', 'template', 'generated']
    """
    text = "".join(tokens[:prompt_length])
    char_roles = ["template"] * len(text)
    cursor = 0
    for message in messages:
        content = str(message["content"])
        start = text.find(content, cursor) if content else -1
        if start < 0:
            continue
        char_roles[start : start + len(content)] = [str(message["role"])] * len(content)
        cursor = start + len(content)
    roles, offset = [], 0
    for token in tokens[:prompt_length]:
        span = char_roles[offset : offset + len(token)]
        content_roles = [r for r in span if r != "template"]
        roles.append(max(set(content_roles), key=content_roles.count) if content_roles else "template")
        offset += len(token)
    return roles + ["generated"] * (len(tokens) - prompt_length)
