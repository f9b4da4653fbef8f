"""Errors raised by genattrib.

Every error names the argument that was wrong and says how to fix it, e.g.::

    >>> raise InvalidArgumentError("method", "unknown method 'foo'", "use one of: saliency, ...")
    Traceback (most recent call last):
    genattrib.errors.InvalidArgumentError: Invalid `method`: unknown method 'foo'. Fix: use one of: saliency, ....
"""

from __future__ import annotations

from collections.abc import Iterable


class GenattribError(Exception):
    """Base class of every error genattrib raises on purpose."""


class InvalidArgumentError(GenattribError, ValueError):
    """An argument the user passed cannot be used.

    Example:
        >>> InvalidArgumentError("prompt", "the prompt is empty", "pass some text").argument
        'prompt'
    """

    def __init__(self, argument: str, problem: str, fix: str) -> None:
        self.argument = argument
        self.problem = problem
        self.fix = fix
        super().__init__(f"Invalid `{argument}`: {problem}. Fix: {fix}.")


class UnknownNameError(InvalidArgumentError, KeyError):
    """A registry look-up (method, target, reducer ...) found no such name."""

    def __init__(self, argument: str, name: object, valid: Iterable[str]) -> None:
        self.valid = sorted(valid)
        super().__init__(
            argument,
            f"unknown name {name!r}",
            f"use one of: {', '.join(self.valid)}",
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class UnsupportedModelError(GenattribError, TypeError):
    """The model cannot do what the chosen method needs (e.g. return attentions)."""


class MissingDependencyError(GenattribError, ImportError):
    """An optional package is needed for the requested feature."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run that saves as it goes (``stream_to=``, ``attribute_dataset``): still a
    :class:`KeyboardInterrupt` (``except KeyboardInterrupt`` catches it), whose message says what
    is saved and how to resume, instead of a traceback into torch.

    ``saved``: what the folder holds; ``resume``: the call that goes on; ``rank``: the process
    that raised it (only rank 0 reports it on the command line).

    Example:
        >>> str(RunInterrupted("12 of 40 rows saved in 'story'", "call attribute() again to resume"))
        "interrupted: 12 of 40 rows saved in 'story'; call attribute() again to resume"
        >>> isinstance(RunInterrupted("", ""), KeyboardInterrupt)
        True
    """

    def __init__(self, saved: str, resume: str, rank: int = 0) -> None:
        self.saved = saved
        self.resume = resume
        self.rank = rank
        super().__init__(f"interrupted: {saved}; {resume}")

    def __str__(self) -> str:
        return str(self.args[0])


class GenattribWarning(UserWarning):
    """Something worked, but not as well as asked: e.g. ReAGent probes cut off before they stopped.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warnings.warn(GenattribWarning("3 of 16 probes did not stop"))
        >>> caught[0].category.__name__
        'GenattribWarning'
    """
