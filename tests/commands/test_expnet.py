"""The `expnet` dispatcher: every command reaches its module, errors are exit codes."""

import re
import subprocess
import sys
from pathlib import Path

from commands import expnet as cli
from tests.pipelines.conftest import EXAMPLES

REPO = Path(__file__).resolve().parents[2]


def test_usage_and_unknown_commands(capsys):
    assert cli.main(["--help"]) == 0
    assert "generate" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["evaluate", "nothing"]) == 2


def test_models_list_names_the_open_model(capsys):
    assert cli.main(["models", "list"]) == 0
    assert "open-makehuman-v1" in capsys.readouterr().out


def test_generate_reports_bad_flags_and_missing_model(tmp_path, capsys):
    assert cli.main(["generate", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--crop-size", "4"]) == 2
    assert "--crop-size must be in 32..4096" in capsys.readouterr().err
    assert cli.main(["generate", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--model", str(tmp_path / "missing.npz")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_every_command_module_has_a_main():
    for name, load_main in [*cli.COMMANDS.items(), *cli.EVALUATIONS.items()]:
        assert callable(load_main()), name


def _console_command() -> str:
    """The ``expnet`` script pip installed beside this interpreter."""
    script = Path(sys.executable).parent / "expnet"
    assert script.is_file(), f"no console script at {script}"
    return str(script)


def test_generate_and_inspect_as_a_user_runs_them(tmp_path):
    """The console commands on the whole demo folder, in fresh processes, several times.

    A thread left running at interpreter exit once aborted the process after its summary
    (status 134), in some runs only: so every run's exit status is checked.
    """
    expnet = _console_command()
    for run in range(3):
        output = tmp_path / f"out{run}"
        generate = subprocess.run([expnet, "generate", "--input", str(EXAMPLES), "--output",
                                   str(output)], capture_output=True, text=True, timeout=300)
        assert generate.returncode == 0, generate.stderr[-2000:]
        # The demo folder: 10 inputs, one photo without a face, one byte-identical copy.
        assert "10 inputs -> 8 written" in generate.stdout, generate.stdout
        assert "1 failed, 1 duplicates" in generate.stdout
        assert "failed detect/no_face: 1" in generate.stdout
        assert "labels (29-D, sigma units):" in generate.stdout
        inspect = subprocess.run([expnet, "inspect", str(output), "--no-report"],
                                 capture_output=True, text=True, timeout=300)
        assert inspect.returncode == 0, inspect.stderr[-2000:]
        assert re.search(r"^\s+rows\s+8$", inspect.stdout, re.M), inspect.stdout


def test_a_dlib_run_never_imports_torch(tmp_path):
    """``apache_beam.ml`` imports torch when it is installed; a dlib run must not pay for it."""
    script = (
        "import sys\n"
        "from commands import expnet as cli\n"
        f"code = cli.main(['generate', '--input', {str(EXAMPLES)!r}, '--output', "
        f"{str(tmp_path / 'out')!r}, '--landmarker', 'dlib'])\n"
        "print('exit', code)\n"
        "print('loaded', sorted(name for name in sys.modules\n"
        "                       if name.split('.')[0] == 'torch' or name == 'apache_beam.ml'))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exit 0" in result.stdout
    assert "loaded []" in result.stdout, result.stdout
