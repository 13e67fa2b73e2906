#!/usr/bin/env python3
"""Checks that the README shows a file as it is: the first ``` block of LANG after the heading
HEADING equals FILE (from its first line, or from the first line starting with FROM). Used by
the tests that build and run those files (tools/test_embed.sh, test_c_api.sh, test_python.sh),
so that the README's examples are the ones tested.

    python3 tools/readme_example.py "## Use from C" c examples/c/quickstart.c [FROM]

Exit code 1 with one line naming both when they differ.
"""
import re
import sys
from pathlib import Path


def main() -> int:
    heading, lang, path = sys.argv[1:4]
    start = sys.argv[4] if len(sys.argv) > 4 else None
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    at = readme.find(f"\n{heading}\n")
    if at < 0:
        print(f"readme_example.py: error: README.md has no heading '{heading}'", file=sys.stderr)
        return 1
    block = re.search(rf"```{re.escape(lang)}\n(.*?)```", readme[at:], re.S)
    program = (root / path).read_text()
    if start is not None:
        program = program[program.index(start) :]
    if block is None or block.group(1) != program:
        print(f"readme_example.py: error: the {lang} block under '{heading}' in README.md is not {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
