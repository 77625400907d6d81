"""`explorer --version`: one line, the versions the packages themselves report, exit 0."""

from __future__ import annotations

import platform

import optuna
import pytest
import torch
import torchvision

import explorer
from explorer.commands import main


def test_version_prints_one_line_with_the_packages_own_versions(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code in (0, None)
    out, err = capsys.readouterr()
    assert err == "" and out == (f"explorer {explorer.__version__} (python {platform.python_version()}, torch "
                                 f"{torch.__version__}, torchvision {torchvision.__version__}, optuna "
                                 f"{optuna.__version__})\n")
