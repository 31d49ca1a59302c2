"""The README's Python API example runs as written, and the public names are what it says."""

import re
from pathlib import Path

import pytest
import torch

import sbrnn

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs(monkeypatch, capsys):
    text = README.read_text()
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(README.parent)
    torch.manual_seed(0)
    exec(compile(code, "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "193 0.51" and printed[1] == "145 0.22" and printed[2] == "hh"
    assert printed[3].split()[0] in ("learned", "a-priori") and printed[-1] == "29"


def test_public_names_and_errors():
    assert set(sbrnn.__all__) >= {
        "SparseRNN",
        "SparseBlockSpec",
        "balance",
        "read_frame",
        "load_parent",
        "recommend",
    }
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sbrnn.nope  # noqa: B018
    with pytest.raises(sbrnn.SparseRNN.__init__.__globals__["SbrnnError"], match="exactly one of budget"):
        sbrnn.SparseRNN(8, 2)
    layer = sbrnn.SparseRNN(8, 2, hidden_size=6, densities=".5,1,1/1,1,1", seed=1)
    y, state = layer(torch.randn(3, 4, 8))
    assert y.shape == (3, 4, 2) and state.shape == (3, 8) and layer.spec.density("hx") == 0.5
