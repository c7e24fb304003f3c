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

# Each loader imports its command's module only when that command runs (so ``expnet
# generate`` never imports torch) and returns its ``main(argv) -> int``.
def _generate():
    from pipelines import generate

    return generate.main


def _synth():
    from pipelines import synth

    return synth.main


def _inspect():
    from inspection import cli

    return cli.main


def _models():
    from fitting.models import cli

    return cli.main


def _train():
    from training import train

    return train.main


def _predict():
    from training import predict

    return predict.main


def _evaluate_landmarks():
    from fitting.landmarks import evaluate

    return evaluate.main


def _evaluate_emotions():
    from training import evaluate

    return evaluate.main


COMMANDS = {
    "generate": _generate,
    "synth": _synth,
    "inspect": _inspect,
    "models": _models,
    "train": _train,
    "predict": _predict,
}
EVALUATIONS = {
    "landmarks": _evaluate_landmarks,
    "emotions": _evaluate_emotions,
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


def _run(load_main, argv: list[str]) -> int:
    try:
        command_main = load_main()
    except ImportError as error:
        print(f"expnet: this command needs a package that is not installed ({error.name}); "
              "install the extra it names, e.g. pip install 'expnet-data[train]'",
              file=sys.stderr)
        return 2
    return command_main(argv)


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
        return _run(EVALUATIONS[rest[0]], rest[1:])
    if command not in COMMANDS:
        print(f"expnet: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return _run(COMMANDS[command], rest)


if __name__ == "__main__":
    sys.exit(main())
