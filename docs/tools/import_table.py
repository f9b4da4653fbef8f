"""Print the import table of docs/architecture.md from genattrib's source (read with ast).

    python docs/tools/import_table.py            # print the Markdown table
    python docs/tools/import_table.py --write    # replace the table in docs/architecture.md
    python docs/tools/import_table.py --check    # exit 1 when the doc's table is out of date

tests/project/test_architecture.py fails when the table in the doc differs from this output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "helpers"))

from import_graph import DOC, markdown_table, scan, table_in, with_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"update the table in {DOC.name} in place")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when the table in {DOC.name} is out of date")
    args = parser.parse_args(argv)
    table = markdown_table(scan())
    if not (args.write or args.check):
        sys.stdout.write(table)
        return 0
    doc = DOC.read_text(encoding="utf-8")
    if args.check:
        stale = table_in(doc) != table
        print(f"{DOC}: import table {'out of date: run with --write' if stale else 'up to date'}")
        return int(stale)
    DOC.write_text(with_table(doc, table), encoding="utf-8")
    print(f"updated the import table in {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
