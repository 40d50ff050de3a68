"""Domain adaptation as its own stage: adapt(run, config) -> run on a finished run."""

import pytest
from conftest import make_folder

from edgetransfer.adapt import adapt
from edgetransfer.checkpoint import load_model
from edgetransfer.errors import UsageError
from edgetransfer.finetune import FinetuneConfig, finetune


def test_adapt_is_a_stage_on_a_finished_run(image_folder, tmp_path):
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options))
    before = run.load_card()
    assert adapt(run, FinetuneConfig(**options)) is run and run.load_card() == before, "nothing to adapt to"
    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    adapted = adapt(run, FinetuneConfig(**options, adapt_bn=str(target), target_val=str(target)))
    card = adapted.load_card()
    assert card.training["adaptation"]["adapt_bn_images"] == 12
    assert card.artifacts["model.safetensors"]["sha256"] != before.artifacts["model.safetensors"]["sha256"]
    load_model(adapted, card)  # the new checkpoint matches the sha256 the card records
    other = make_folder(tmp_path / "other", per_class=4, classes=2)
    with pytest.raises(UsageError, match="--target-val has classes"):
        adapt(run, FinetuneConfig(**options, adapt_bn=str(target), target_val=str(other)))
