"""The ``expnet`` command: one entry point, one module per job.

    expnet generate --input DIR --output OUT      label a face collection
    expnet models list | info SPEC | convert ... | build-open
"""

from __future__ import annotations

import sys

USAGE = """usage: expnet COMMAND [ARGS]

commands:
  generate   label a face collection: Parquet shards of (face crop, 29-D expression label)
  models     list, inspect, convert and build morphable models
"""


def _generate(argv: list[str]) -> int:
    from fitting.models import ModelFileError
    from pipelines import generate

    try:
        stats = generate.run(argv)
    except (generate.OptionsError, ModelFileError, FileNotFoundError) as error:
        print(f"expnet generate: error: {error}", file=sys.stderr)
        return 2
    return 0 if stats["invariant"]["holds"] else 1


def _models(argv: list[str]) -> int:
    from fitting.models import cli

    return cli.main(argv)


COMMANDS = {"generate": _generate, "models": _models}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"expnet: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
