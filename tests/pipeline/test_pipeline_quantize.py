"""The quantize step: the int8 copy served when it holds the accuracy rule, the float model (and why)
otherwise, on a really quantised tiny model and a sliver of LFW."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facesim.pipeline import steps
from facesim.storage.model_artifact import ONNX_FILE, QUANTIZATION, load_model_card, read_model_info
from facesim.training.quantize import AccuracyRule

# The tiny model's figures on 6 pairs per fold are far apart from run to run: rules that surely hold or break
# (fold 10 has at most 600 pairs, so it never loses more than 600 or fewer than -600).
ANY_FIGURES = AccuracyRule(max_lost_pairs=600, max_tar_drop=1.0)
NO_FIGURES = AccuracyRule(max_lost_pairs=-601)


@pytest.fixture
def layout(tmp_path: Path, yunet_path: Path, monkeypatch: pytest.MonkeyPatch) -> steps.RunLayout:
    monkeypatch.setenv("FACESIM_YUNET_MODEL", str(yunet_path))
    monkeypatch.setenv("FACESIM_HOME", str(tmp_path / "home"))  # the crop cache of the raw data, the registry
    return steps.RunLayout.for_run("local", str(tmp_path / "work"), "run-1")


def test_the_int8_copy_is_served_when_it_holds_and_the_float_model_with_the_reason_when_not(
    tiny_model_dir: Path, lfw_sliver: Path, layout: steps.RunLayout, tmp_path: Path
) -> None:
    served = steps.quantize(str(tiny_model_dir), str(lfw_sliver), layout, True, ANY_FIGURES)
    assert (served.model_dir, served.precision, served.metadata()) == (
        str(layout.int8_model),
        "int8",
        {"precision": "int8"},
    )
    card = load_model_card(layout.int8_model)
    assert card.extra[QUANTIZATION]["from_fingerprint"] == read_model_info(tiny_model_dir).version
    check = card.extra[QUANTIZATION]["check"]
    assert served.metrics["int8_fold10_correct_pairs"] == check["int8"]["fold10_correct_pairs"]
    assert served.metrics["float_tar_at_far_1e-3_all_pairs"] == check["float"]["tar_at_far_1e-3_all_pairs"]
    # The served artifact records where the int8 copy is on the volume: what a cluster deploy mounts.
    published = steps.publish_model(served.model_dir, str(tmp_path / "artifact"))
    assert published["volume_path"] == str(layout.int8_model)
    assert (tmp_path / "artifact" / ONNX_FILE).read_bytes() == (layout.int8_model / ONNX_FILE).read_bytes()

    # The run's prepared crop cache as the data (what the pipeline gives the step), and a rule that breaks.
    (cache,) = (tmp_path / "home" / "cache").iterdir()
    refused = steps.quantize(str(tiny_model_dir), str(cache), layout, True, NO_FIGURES)
    assert (refused.model_dir, refused.precision, refused.metrics) == (str(tiny_model_dir), "float", {})
    assert "(at most -601 allowed)" in refused.int8_refused and "nothing written" in refused.int8_refused
    assert refused.metadata() == {"precision": "float", "int8_refused": refused.int8_refused}
    assert not layout.int8_model.exists()  # the earlier copy is not served by mistake


def test_without_int8_onnx_or_protocol_files_the_float_model_is_served_and_the_run_goes_on(
    tiny_model_dir: Path, lfw_sliver: Path, layout: steps.RunLayout, tmp_path: Path
) -> None:
    off = steps.quantize(str(tiny_model_dir), str(lfw_sliver), layout, False)
    assert (off.precision, off.int8_refused) == ("float", "int8 is off (the pipeline's int8 parameter)")

    no_onnx = tmp_path / "no-onnx"
    shutil.copytree(tiny_model_dir, no_onnx, ignore=shutil.ignore_patterns(ONNX_FILE))
    served = steps.quantize(str(no_onnx), str(lfw_sliver), layout, True)
    assert (served.model_dir, served.precision) == (str(no_onnx), "float")
    assert "has no model.onnx: run `facesim model export-onnx" in served.int8_refused

    no_people = tmp_path / "no-people"
    no_people.mkdir()
    for item in lfw_sliver.iterdir():
        if item.name != "people.txt":
            (no_people / item.name).symlink_to(item)
    served = steps.quantize(str(tiny_model_dir), str(no_people), layout, True)
    assert served.precision == "float" and "people.txt is missing" in served.int8_refused
