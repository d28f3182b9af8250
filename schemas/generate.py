"""Write the JSON Schemas of the input topics into schemas/ (from streams/recordspec.py).

Usage: python schemas/generate.py [--check]

The schemas are built by streams/jsonschemas.py from the same definitions the engine validates
with. Both files are committed; --check (and tests/unit/test_schemas.py) fails when they differ
from what this script writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from streams.jsonschemas import FILES, render  # noqa: E402


def generate() -> dict[Path, str]:
    return {HERE / name: render(topic) for topic, name in FILES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("stale, run python schemas/generate.py: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
