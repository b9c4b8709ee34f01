"""One contract test over every registered projector: shapes, save/load round trip, a training step, errors."""

import pytest
import torch

from llmrec.adapters import PROJECTORS, LinearProjector, Projector, ProjectorConfig, build_projector
from llmrec.adapters.projectors import MLPProjector, register_projector
from llmrec.errors import LlmrecError

IN, OUT = 12, 20
VECTORS = torch.randn(7, IN, generator=torch.Generator().manual_seed(0))


def make(kind, **overrides):
    torch.manual_seed(0)
    return build_projector(ProjectorConfig(kind=kind, **overrides).resolve(IN, OUT))


@pytest.mark.parametrize("kind", sorted(PROJECTORS))
def test_shapes(kind):
    projector = make(kind).eval()
    assert isinstance(projector, Projector) and projector.kind == kind
    assert projector(VECTORS).shape == (7, OUT)
    assert projector(VECTORS[:0]).shape == (0, OUT)


@pytest.mark.parametrize("kind", sorted(PROJECTORS))
def test_save_load_round_trip_is_bit_identical(kind, tmp_path):
    projector = make(kind, dropout=0.1)
    projector.save(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["config.json", "model.safetensors"]
    again = Projector.load(tmp_path / "p")
    assert type(again) is type(projector) and again.config == projector.config and not again.training
    for key, value in projector.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(projector.eval()(VECTORS), again(VECTORS))


@pytest.mark.parametrize("kind", sorted(PROJECTORS))
def test_one_training_step_changes_every_parameter(kind):
    projector = make(kind).train()
    before = {k: v.detach().clone() for k, v in projector.named_parameters()}
    optimizer = torch.optim.AdamW(projector.parameters(), lr=1e-2)
    loss = (projector(VECTORS) - 1).pow(2).mean()
    loss.backward()
    optimizer.step()
    for name, param in projector.named_parameters():
        assert not torch.equal(param, before[name]), name


def test_mlp_is_two_layers_with_a_hidden_width():
    projector = make("mlp", hidden_size=8)
    assert isinstance(projector, MLPProjector)
    assert projector.fc1.weight.shape == (8, IN) and projector.fc2.weight.shape == (OUT, 8)
    assert make("mlp").fc1.weight.shape == (OUT, IN)  # hidden defaults to out_dim


def test_sizes_resolve_from_the_representation_and_the_llm():
    assert ProjectorConfig(kind="linear", out_dim=OUT).resolve(IN, OUT) == ProjectorConfig("linear", IN, OUT)
    with pytest.raises(LlmrecError, match="out_dim is 960 but the LLM hidden size is 576"):
        ProjectorConfig(out_dim=960).resolve(64, 576)
    with pytest.raises(LlmrecError, match="sizes are unresolved"):
        build_projector(ProjectorConfig())


def test_hidden_size_mismatch_is_a_clear_error():
    projector = make("linear")
    projector.check_sizes(IN, OUT)
    with pytest.raises(LlmrecError, match="outputs 20 dimensions but the LLM's hidden size is 576"):
        projector.check_sizes(IN, 576)
    with pytest.raises(LlmrecError, match="takes 12-wide item vectors but the item representation is 416"):
        projector.check_sizes(416, OUT)


def test_bad_configs_and_files(tmp_path):
    with pytest.raises(LlmrecError, match="unknown projector 'qformer'; registered projectors: linear, mlp"):
        ProjectorConfig(kind="qformer")
    with pytest.raises(LlmrecError, match="no field.* hidden; known fields"):
        build_projector({"kind": "mlp", "in_dim": 4, "out_dim": 4, "hidden": 8})
    with pytest.raises(LlmrecError, match="not a saved projector"):
        Projector.load(tmp_path)
    make("mlp").save(tmp_path / "mlp")
    with pytest.raises(LlmrecError, match="holds a mlp projector, not a linear"):
        LinearProjector.load(tmp_path / "mlp")
    (tmp_path / "mlp" / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(LlmrecError, match="corrupted projector"):
        Projector.load(tmp_path / "mlp")


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="already registered"):
        register_projector("linear", LinearProjector)
