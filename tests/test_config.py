import pytest

from tunewise.config import ConfigError, load_config


def test_example_config_loads(tiny_project):
    config = load_config(tiny_project)
    assert config.task.labels == ["business", "sports", "tech"]
    assert config.train.lora.r == 4


def test_every_example_config_loads():
    from pathlib import Path

    examples = sorted(Path(__file__).parents[1].joinpath("examples").glob("*/tunewise.yaml"))
    assert examples
    for path in examples:
        load_config(path)


def test_set_overrides_nested_keys_and_parses_values(tiny_project):
    config = load_config(tiny_project, ["train.lora.r=16", "train.epochs=2.5", "rungs=[zero-shot]"])
    assert config.train.lora.r == 16
    assert config.train.epochs == 2.5
    assert config.rungs == ["zero-shot"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lora.rank=4", "unknown key 'train.lora.rank'"),
        ("train.batch_size=0", "bad value for 'train.batch_size'"),
        ("task.type=regression", "bad value for 'task.type'"),
        ("data.split.test=0.5", "train + val + test must be 1.0"),
        ("novel=1", "unknown key 'novel'"),
    ],
)
def test_bad_values_name_the_key_and_the_set_option(tiny_project, override, message):
    # The value came from --set, so the error points there, not at tunewise.yaml.
    with pytest.raises(ConfigError) as err:
        load_config(tiny_project, [override])
    text = str(err.value)
    assert message in text
    assert text.startswith(f"--set {override}: ") and "tunewise.yaml" not in text
    assert "\n" not in text


def test_missing_labels_for_classification(tiny_project):
    with pytest.raises(ConfigError, match="at least two labels"):
        load_config(tiny_project, ["task.labels=[]"])


def test_bad_yaml_names_the_line(tmp_path):
    (tmp_path / "tunewise.yaml").write_text("task:\n  type: [unclosed\n")
    with pytest.raises(ConfigError, match=r"tunewise.yaml:\d+: not valid YAML"):
        load_config(tmp_path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path)


def test_bad_override_syntax(tiny_project):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(tiny_project, ["train.epochs"])


@pytest.mark.parametrize("key", ["data.test_file", "data.ood_test", "data.documents", "task.json_schema",
                                 "train.dpo.data", "data.files"])
def test_a_path_outside_the_project_names_its_key(tiny_project, key):
    value = "[data/rows.jsonl, ../../outside/t.jsonl]" if key == "data.files" else "../../outside/t.jsonl"
    shown = r"data.files\[1\]" if key == "data.files" else key
    with pytest.raises(ConfigError, match=rf"tunewise.yaml: {shown}: '../../outside/t.jsonl' is outside the project "
                                          r"folder .*data.allow_outside_paths: true"):
        load_config(tiny_project, [f"{key}={value}"])


def test_absolute_paths_outside_need_the_explicit_key(tiny_project, tmp_path):
    outside = tmp_path / "elsewhere" / "t.jsonl"
    with pytest.raises(ConfigError, match=r"data.test_file: '.*elsewhere/t.jsonl' is outside the project"):
        load_config(tiny_project, [f"data.test_file={outside}"])
    config = load_config(tiny_project, [f"data.test_file={outside}", "data.allow_outside_paths=true"])
    assert config.data.test_file == str(outside)
    with pytest.raises(ConfigError, match=r"data.ood_test: '../x.jsonl' is outside .*give it as an absolute path"):
        load_config(tiny_project, ["data.ood_test=../x.jsonl", "data.allow_outside_paths=true"])
    inside = load_config(tiny_project, [f"data.test_file={tiny_project / 'data' / 't.jsonl'}", "data.ood_test=data/../o.jsonl"])
    assert inside.data.ood_test == "data/../o.jsonl"
