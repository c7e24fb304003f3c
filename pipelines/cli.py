"""The ``expnet`` command: one entry point, one module per job.

    expnet generate --input DIR --output OUT      label a face collection
    expnet synth --count N --output DIR           render faces with known labels
    expnet inspect OUT                            validate and report on a generated dataset
    expnet models list | info SPEC | convert ... | build-open
    expnet train | predict                        reference ExpNet trainer (train extra)
    expnet evaluate landmarks | emotions          landmark accuracy; the paper's protocol

Each command's module is imported only when it runs, so ``expnet generate`` never imports
torch.
"""

from __future__ import annotations

import importlib
import logging
import sys

USAGE = """usage: expnet COMMAND [ARGS]

commands:
  generate   label a face collection: Parquet shards of (face crop, 29-D expression label)
  synth      render synthetic faces with exact labels, plus a manifest for generate
  inspect    validate a generated dataset, print a summary and write an HTML report
  models     list, inspect, convert and build morphable models
  train      train the reference ExpNet on generated shards        (needs the train extra)
  predict    predict expression coefficients with a trained ExpNet (needs the train extra)
  evaluate   'evaluate landmarks' (NME on iBUG .pts) or 'evaluate emotions' (paper protocol)

'expnet COMMAND --help' describes each command.
"""

# command -> module whose main(argv) -> int runs it
COMMANDS = {
    "generate": "pipelines.generate",
    "synth": "pipelines.synth",
    "inspect": "pipelines.inspect",
    "models": "fitting.models.cli",
    "train": "training.train",
    "predict": "training.predict",
}
EVALUATIONS = {
    "landmarks": "fitting.landmarks.evaluate",
    "emotions": "training.evaluate",
}


# Warnings Beam prints on every run that say nothing about the user's data.
_BEAM_NOISE = ("apitools not found", "Resource module is not available")


class _DropBeamNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_BEAM_NOISE)


def _quiet_beam_noise() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropBeamNoise())


def _module_main(module_name: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        print(f"expnet: this command needs a package that is not installed ({error.name}); "
              "install the extra it names, e.g. pip install 'expnet-data[train]'",
              file=sys.stderr)
        return 2
    return module.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_beam_noise()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "evaluate":
        if not rest or rest[0] not in EVALUATIONS:
            print(f"usage: expnet evaluate {{{','.join(EVALUATIONS)}}} ...", file=sys.stderr)
            return 2
        return _module_main(EVALUATIONS[rest[0]], rest[1:])
    if command not in COMMANDS:
        print(f"expnet: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return _module_main(COMMANDS[command], rest)


if __name__ == "__main__":
    sys.exit(main())
