"""Templates and which prompt tokens are the context (by character offsets into the formatted,
chat-templated text).

Example:
    >>> format_template("{context} {current}", "Where?", "Anna lives in Lisbon.")
    'Anna lives in Lisbon. Where?'
    >>> prompt_of("Where?", chat=True)
    [{'role': 'user', 'content': 'Where?'}]
"""

from __future__ import annotations

from typing import Any

from genattrib.errors import InvalidArgumentError


def format_template(template: str, current: str, context: str | None = None) -> str:
    """``template`` with ``{current}`` and ``{context}`` filled (a template without ``{context}`` ignores it)."""
    if context is None and "{context}" in template:
        raise InvalidArgumentError(
            "input_context_text", f"the template {template!r} has a {{context}} but no context was given",
            "pass input_context_text= (or output_context_text=), or a template without {context}",
        )  # fmt: skip
    return template.format(current=current, context=context or "")


def prompt_of(text: str, chat: bool) -> str | list[dict[str, str]]:
    """The prompt of a formatted input: the text, or (``chat``) one user message holding it."""
    return [{"role": "user", "content": text}] if chat else text


def _text_of(tokenizer: Any, prompt: str | list[dict[str, str]]) -> tuple[str, bool]:
    """(the text the prompt's tokens come from, whether the tokenizer adds its special tokens)."""
    if isinstance(prompt, str):
        return prompt, True
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False), False


def context_token_mask(tokenizer: Any, prompt: str | list[dict[str, str]], context: str | None) -> list[bool]:
    """For each token of ``prompt`` (as genattrib tokenizes it), whether it overlaps the context's text."""
    text, special = _text_of(tokenizer, prompt)
    encoded = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    if context is None or not context.strip():
        return [False] * len(encoded["input_ids"])
    start = text.find(context)
    if start < 0:
        raise InvalidArgumentError(
            "input_template", "the context does not appear in the formatted input",
            "use a template that puts {context} in the input as it is",
        )  # fmt: skip
    stop = start + len(context)
    return [a < stop and b > start and b > a for a, b in encoded["offset_mapping"]]
