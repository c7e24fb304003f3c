"""The `expnet` dispatcher: every command reaches its module, errors are exit codes."""

from pipelines import cli


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
    import importlib

    for module_name in [*cli.COMMANDS.values(), *cli.EVALUATIONS.values()]:
        assert callable(importlib.import_module(module_name).main), module_name
