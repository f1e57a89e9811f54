"""The config keys are documented once, in the schema: README.md and config/README.md are generated from it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from conftest import BUNDLED_CONFIGS, REPO


def _load_configdoc():
    spec = importlib.util.spec_from_file_location("configdoc", REPO / "docs" / "configdoc.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


configdoc = _load_configdoc()


def _copy_docs(root: Path) -> None:
    """Copy the two documented files and the schema into ``root``."""
    for rel in ("README.md", "config/README.md", str(configdoc.SCHEMA)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)


@pytest.fixture(scope="module")
def schema() -> dict:
    return configdoc.load_schema(REPO / configdoc.SCHEMA)


def test_readme_and_config_readme_agree_with_the_schema():
    diffs = configdoc.check(REPO)
    assert not diffs, "run `make docs` (python docs/configdoc.py --write):\n" + "\n".join(diffs)


def test_every_key_has_a_description(schema):
    assert configdoc.missing_descriptions(schema) == []
    names = [key.name for key in configdoc.keys(schema)]
    assert "model.training.input_transform.kind" in names and "peaks.callpeak.pvalue" in names


def test_documentation_keywords_leave_validation_alone(schema):
    Draft202012Validator.check_schema(schema)
    for config in BUNDLED_CONFIGS:
        errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load((REPO / config).read_text())))
        assert errors == [], config


def test_documented_code_defaults_are_the_codes(schema):
    """``x-default`` states a default the code applies (it depends on the preset): it must be the code's."""
    from atacdenoise.model.network import DEFAULT_PRESET, resolve_hparams
    from atacdenoise.model.train import TRAIN_DEFAULTS

    model = schema["properties"]["model"]["properties"]
    assert model["preset"]["default"] == DEFAULT_PRESET
    for group, code in (("training", TRAIN_DEFAULTS), ("architecture", resolve_hparams({}))):
        for name, node in model[group]["properties"].items():
            assert "default" not in node, f"model.{group}.{name}: a schema default would override the preset"
            assert node["x-default"] == code[name], f"model.{group}.{name}"
    for key in configdoc.keys(schema):
        assert not {"default", "x-default"} <= set(key.node), key.name


def test_check_reports_a_stale_block_and_write_mends_it(tmp_path, capsys):
    _copy_docs(tmp_path)
    schema_path = tmp_path / configdoc.SCHEMA
    text = schema_path.read_text()
    schema_path.write_text(text.replace("CPU threads of the train and infer rules", "CPU threads of train and infer"))

    assert configdoc.main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "+| `model.threads` | `2` | CPU threads of train and infer |" in out
    assert "--- a/config/README.md" in out

    assert configdoc.main(["--write", "--root", str(tmp_path)]) == 0
    assert configdoc.main(["--check", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text().count("CPU threads of train and infer") == 1


def test_a_file_without_its_markers_is_an_error(tmp_path, capsys):
    _copy_docs(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace(configdoc.END, ""))
    assert configdoc.main(["--check", "--root", str(tmp_path)]) == 2
    assert "README.md: expected one block" in capsys.readouterr().err


def test_readme_rows_follow_the_x_readme_marks(schema):
    rows = {key: default for key, default, _ in configdoc.readme_rows(schema)}
    assert rows["`peaks.labels.*`"] == "cutoff `3`, min_length `200`, max_gap `30`"
    assert rows["`genome.sizes`"] == "required"
    assert "`model.infer_batch_size`" not in rows


def test_an_unknown_x_readme_child_is_an_error(schema):
    bad = yaml.safe_load(yaml.safe_dump(schema))
    bad["properties"]["reads"]["x-readme"] = ["min_mapq", "max_mapq"]
    with pytest.raises(ValueError, match="max_mapq"):
        list(configdoc.readme_rows(bad))


def test_write_leaves_text_outside_the_markers_alone(tmp_path: Path):
    _copy_docs(tmp_path)
    readme = tmp_path / "config" / "README.md"
    begin = configdoc.BLOCKS[1].begin
    head = readme.read_text().partition(begin)[0]
    readme.write_text(f"{head}{begin}\nstale\n{configdoc.END}\nhand-written tail\n")
    configdoc.write(tmp_path)
    text = readme.read_text()
    assert text.startswith(head) and text.endswith(f"{configdoc.END}\nhand-written tail\n")
    assert "| `model.training.lr` |" in text
