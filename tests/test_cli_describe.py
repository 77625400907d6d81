"""`explorer describe`: the table, the fvcore check and one-line errors with exit code 2."""

import json
import subprocess
import sys

from explorer.commands import main


def test_describe_preset_prints_table_with_units(capsys):
    assert main(["describe", "squeezenet1_1"]) == 0
    out = capsys.readouterr().out
    # torchvision squeezenet1_1: 1,235,496 parameters; fire2 is 16 / 64 / 64 (paper Table 1).
    assert "parameters   1,235,496" in out
    assert "MACs" in out and "multiply-adds" in out and "MB" in out and "MiB" in out
    fire2 = next(line for line in out.splitlines() if line.startswith("fire2"))
    assert fire2.split()[1:5] == ["128x55x55", "16", "64", "64"]


def test_describe_check_agrees_with_fvcore(capsys):
    assert main(["describe", "squeezenet_cifar", "--check"]) == 0
    assert "agree" in capsys.readouterr().out


def test_describe_file_and_input_size(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"spec": {"stem": "cifar", "pools": [2], "input_size": 32}}))
    assert main(["describe", str(path), "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "input 64x64" in out
    assert next(line for line in out.splitlines() if line.startswith("fire2")).split()[1] == "128x64x64"


def test_bad_inputs_are_one_line_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sr: 1.5\n")
    for args in (["describe", "nope"], ["describe", str(bad)],
                 ["describe", "squeezenet1_0", "--input-size", "4"]):
        proc = subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("explorer: error:")
        assert "Traceback" not in proc.stderr
