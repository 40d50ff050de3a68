import dataclasses
import json

import onnx
import pytest

from edgetransfer.card import SCHEMA_VERSION, ModelCard, Preprocessing, embed_in_onnx, read_from_onnx_metadata
from edgetransfer.errors import RunDirError


def make_card() -> ModelCard:
    return ModelCard(
        labels=("cat", "dog"),
        preprocessing=Preprocessing(resize=96, crop=96),
        backbone="mobilenet_v2",
        weights={"source": "x", "sha256": "ab"},
        dataset={"path": "/d", "fingerprint": "f"},
        metrics={"torch": {"test_top1": 0.5}},
    )


def test_round_trip_keeps_every_field():
    card = make_card()
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert set(json.loads(card.to_json())) == {f.name for f in dataclasses.fields(ModelCard)}


def test_other_schema_version_is_rejected_with_a_message():
    data = make_card().to_dict() | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(RunDirError, match="schema_version"):
        ModelCard.from_dict(data)
    for other in ({}, {"schema_version": 2, "results": []}):  # no card at all (a bench.json renamed card.json): it
        # read "has schema_version 2; this edgetransfer reads version 1", an upgrade's problem (a new user's)
        with pytest.raises(RunDirError, match=r"^model card is not a model card \(no labels, backbone or preproc"):
            ModelCard.from_dict(other)


def test_missing_field_is_rejected():
    data = make_card().to_dict()
    del data["labels"]
    with pytest.raises(RunDirError, match="labels: missing"):
        ModelCard.from_dict(data)


def test_a_nan_figure_is_written_as_null_so_the_card_is_strict_json():
    """A device app's JSON parser (JSON.parse, nlohmann::json) refuses NaN: the card never holds it."""
    card = make_card().with_metrics("torch", test_per_class_top1={"cat": 1.0, "dog": float("nan")}, x=float("inf"))

    def refuse(name):
        raise ValueError(f"{name} in a card")

    data = json.loads(card.to_json(), parse_constant=refuse)
    assert data["metrics"]["torch"]["test_per_class_top1"] == {"cat": 1.0, "dog": None}
    assert data["metrics"]["torch"]["x"] is None


def test_with_metrics_merges():
    card = make_card().with_metrics("torch", val_top1=0.9)
    assert card.metrics["torch"] == {"test_top1": 0.5, "val_top1": 0.9}


def test_card_travels_in_onnx_metadata():
    model = onnx.ModelProto()
    embed_in_onnx(model, make_card())
    embed_in_onnx(model, make_card().with_metrics("x", a=1.0))  # replaces, never duplicates
    props = {p.key: p.value for p in model.metadata_props}
    assert sorted(p.key for p in model.metadata_props) == ["edgetransfer.card", "edgetransfer.decode"]
    assert read_from_onnx_metadata(props).metrics["x"] == {"a": 1.0}
    with pytest.raises(RunDirError, match="metadata"):
        read_from_onnx_metadata({})


def test_the_model_files_carry_no_paths_of_the_training_machine():
    from edgetransfer.card import for_model_files

    card = ModelCard(
        labels=("a", "b"),
        preprocessing=Preprocessing(resize=32, crop=32),
        backbone="mobilenet_v2",
        weights={"source": "/home/alice/weights/mine.pth", "sha256": "0" * 64},
        dataset={"path": "/home/alice/clients/acme/faces", "fingerprint": "f"},
        training={
            "config": {"data": "/home/alice/clients/acme/faces", "out": "models/faces", "adapt_bn": None},
            "copied_from": "models/search/trials/0001-mobilenet_v2-96px-static",
            "adaptation": {"log": ["/home/alice/night-cam unlabelled"]},  # a path in a record not listed: swept
        },
        export={"config": {"data": "C:\\Users\\alice\\faces-val", "int8": {"calibration_dir": "/home/alice/cam"}}},
        artifacts={
            "model.int8.onnx": {
                "quantization": {
                    "calibration_source": "/home/alice/cam",
                    "method": "static",
                    "kept_in_float": ["/features/features.0/features.0.0/Conv"],  # a node name, not a path
                }
            }
        },
    )
    inside = for_model_files(card)
    assert inside.dataset == {"path": "faces", "fingerprint": "f"}
    assert inside.weights["source"] == "mine.pth" and inside.weights["sha256"] == "0" * 64
    assert inside.training["config"] == {"data": "faces", "out": "faces", "adapt_bn": None}
    assert inside.training["copied_from"] == "0001-mobilenet_v2-96px-static"
    assert inside.training["adaptation"]["log"] == ["night-cam unlabelled"]
    assert inside.export["config"] == {"data": "faces-val", "int8": {"calibration_dir": "cam"}}
    assert inside.artifacts["model.int8.onnx"]["quantization"] == {
        "calibration_source": "cam",
        "method": "static",
        "kept_in_float": ["/features/features.0/features.0.0/Conv"],  # it was cut to "Conv"
    }
    assert "alice" not in inside.to_json()
    assert card.dataset["path"] == "/home/alice/clients/acme/faces"  # the run's own card is unchanged
    for source in ("MobileNet_V2_Weights.IMAGENET1K_V1", "https://example.org/w/m.pth"):  # names, URLs: kept
        registry = dataclasses.replace(card, weights={"source": source}, training={}, export={})
        assert for_model_files(registry).weights == {"source": source}


def test_the_decode_text_in_every_model_says_the_strip_rule_the_runtime_applies():
    """A device app written from the decode text embedded in the model refuses what edgetransfer refuses."""
    from edgetransfer.card import DECODE
    from edgetransfer.images import MAX_ASPECT

    assert f"over {MAX_ASPECT}x its shorter" in DECODE["strips"]
