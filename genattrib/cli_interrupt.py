"""What the command line prints on Ctrl-C: one line saying what is saved and the command that
resumes, instead of a traceback (the exit code is 130, as for any interrupted command).

Example:
    >>> import argparse
    >>> from genattrib.errors import RunInterrupted
    >>> argv = ["attribute", "Tell me", "--stream-to", "story"]
    >>> args = argparse.Namespace(command="attribute", stream_to="story", argv=argv)
    >>> print(interrupt_line(args, RunInterrupted("12 of 40 rows saved in 'story'", "call attribute() again")))
    interrupted: 12 of 40 rows saved in 'story'; run the same command again to resume: genattrib attribute 'Tell me' ...
"""

from __future__ import annotations

import argparse
import os
import shlex

from genattrib.errors import RunInterrupted

__all__ = ["interrupt_line"]


def interrupt_line(args: argparse.Namespace, interrupt: KeyboardInterrupt) -> str | None:
    """The line to print for ``interrupt`` (None in a process other than rank 0 of a dataset run)."""
    rank = interrupt.rank if isinstance(interrupt, RunInterrupted) else int(os.environ.get("RANK", "0") or 0)
    if rank != 0:
        return None
    command = "genattrib " + shlex.join(getattr(args, "argv", None) or [str(args.command)])
    resumable = args.command == "attribute-dataset" or getattr(args, "stream_to", None) is not None
    if isinstance(interrupt, RunInterrupted):
        what = interrupt.saved
    elif resumable:
        what = "before anything was attributed, nothing new saved"
    else:
        return "interrupted: nothing saved (--stream-to DIR saves rows as they finish, so a long run can resume)"
    if not resumable:
        return f"interrupted: {what}"
    again = "run the same command again to resume"
    if args.command == "attribute-dataset":
        again += " (with any number of processes)"
    return f"interrupted: {what}; {again}: {command}"
