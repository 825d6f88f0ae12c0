"""Adapter files: safetensors + JSON round trip, KB sizes, refusal of adapters made for another model."""

import json

import pytest
import torch
from utils import tiny_hf_model

import ttkernels
from ttkernels import AdapterMismatchError


def _trained(kind="bert", **patch_kw):
    model = tiny_hf_model(kind)
    ttkernels.patch(model, init="gaussian", **patch_kw)
    return model


def _logits(model):
    ids = torch.arange(3, 17).reshape(2, 7)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _trained(rank=3, modules_to_save=["classifier"], dropout=0.1, init_scale=0.5)
    with torch.no_grad():
        model.classifier.weight.add_(1.0)  # a trained head must travel with the adapter
    expected = _logits(model)
    out = ttkernels.save_adapter(model, tmp_path / "adapter")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]

    fresh = tiny_hf_model("bert")
    ttkernels.load_adapter(fresh, out)
    assert torch.equal(_logits(fresh), expected)
    assert ttkernels.trainable_parameters(fresh).trainable == ttkernels.trainable_parameters(model).trainable
    assert {layer.dropout for layer in ttkernels.tt_layers(fresh).values()} == {0.1}  # the config travels too
    assert {layer.init_scale for layer in ttkernels.tt_layers(fresh).values()} == {0.5}
    assert json.loads((out / "adapter_config.json").read_text())["config"]["init_scale"] == 0.5


def test_config_fields_at_their_default_stay_out_of_the_file():
    """Files with the default dropout and init_scale carry neither key, so versions older than those fields read
    them; a file without them loads with the defaults."""
    data = ttkernels.TTConfig(rank=3).to_dict()
    assert "dropout" not in data and "init_scale" not in data
    loaded = ttkernels.TTConfig.from_dict(data)
    assert loaded.dropout == 0.0 and loaded.init_scale == 1.0
    assert ttkernels.TTConfig.from_dict(ttkernels.TTConfig(init_scale=0.25).to_dict()).init_scale == 0.25


def test_config_json_describes_every_target(tmp_path):
    model = _trained("llama", rank=2, alpha=6.0, shape={"v_proj": [4, 4, 4, 8]})
    ttkernels.save_adapter(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["ttkernels_version"] == ttkernels.__version__
    v = meta["layers"]["model.layers.0.self_attn.v_proj"]
    assert (v["m"], v["n"], v["shape"], v["ranks"], v["alpha"], v["core_dtype"]) == (
        16, 32, [4, 4, 4, 8], [2, 2, 2], 6.0, "float32"
    )
    assert meta["config"]["targets"] is None and meta["config"]["alpha"] == 6.0


def test_adapter_is_kilobytes_and_size_matches_file(tmp_path):
    model = _trained("llama", rank=2)
    n_params = ttkernels.trainable_parameters(model).tt_cores
    assert ttkernels.adapter_size_bytes(model, torch.float16) == 2 * n_params
    ttkernels.save_adapter(model, tmp_path)
    size = (tmp_path / "adapter_model.safetensors").stat().st_size
    assert 4 * n_params <= size < 4 * n_params + 4096  # fp32 cores + a small safetensors header


def test_load_refuses_other_dimensions(tmp_path):
    model = _trained("bert", rank=2)
    ttkernels.save_adapter(model, tmp_path)
    import transformers as tf

    cfg = tf.BertConfig(vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_labels=3)
    other = tf.AutoModelForSequenceClassification.from_config(cfg)
    with pytest.raises(AdapterMismatchError, match=r"is 48x48 in this model but 32x32 in the adapter"):
        ttkernels.load_adapter(other, tmp_path)
    assert not ttkernels.tt_layers(other)


def test_load_refuses_other_targets(tmp_path):
    model = _trained("llama", rank=2)
    ttkernels.save_adapter(model, tmp_path)
    with pytest.raises(AdapterMismatchError, match="does not exist in BertForSequenceClassification"):
        ttkernels.load_adapter(tiny_hf_model("bert"), tmp_path)
    patched_elsewhere = tiny_hf_model("llama")
    ttkernels.patch(patched_elsewhere, targets=["q_proj"])
    with pytest.raises(AdapterMismatchError, match="already patched"):
        ttkernels.load_adapter(patched_elsewhere, tmp_path)


def test_load_refuses_foreign_files(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(AdapterMismatchError, match="not a ttkernels TT-LoRA adapter"):
        ttkernels.load_adapter(tiny_hf_model("bert"), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        ttkernels.load_adapter(tiny_hf_model("bert"), tmp_path / "missing")


def test_load_into_already_patched_model_overwrites_cores(tmp_path):
    model = _trained("bert", rank=2)
    ttkernels.save_adapter(model, tmp_path)
    target = tiny_hf_model("bert")
    ttkernels.patch(target, rank=2)  # zero-init cores, same structure
    ttkernels.load_adapter(target, tmp_path)
    assert torch.equal(_logits(target), _logits(model))


def test_no_pickle_in_the_adapter(tmp_path):
    model = _trained("bert", rank=2)
    ttkernels.save_adapter(model, tmp_path)
    raw = (tmp_path / "adapter_model.safetensors").read_bytes()
    assert not raw.startswith(b"\x80") and b"PK\x03\x04" not in raw[:4]  # neither a pickle nor a torch zip
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "ttkernels-tt-lora"


def test_alpha_comes_from_the_adapter(tmp_path):
    model = _trained("bert", rank=2, alpha=16.0)
    expected = _logits(model)
    ttkernels.save_adapter(model, tmp_path)
    target = tiny_hf_model("bert")
    ttkernels.patch(target, rank=2, alpha=8.0)
    ttkernels.load_adapter(target, tmp_path)
    assert all(layer.alpha == 16.0 for layer in ttkernels.tt_layers(target).values())
    assert torch.equal(_logits(target), expected)


def test_refused_load_changes_nothing(tmp_path):
    model = _trained("bert", rank=3)
    ttkernels.save_adapter(model, tmp_path)
    target = tiny_hf_model("bert")
    ttkernels.patch(target, rank={"bert.encoder.layer.0.attention.self.query": 3, "query": 4, "value": 3},
                    init="gaussian")
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    with pytest.raises(AdapterMismatchError, match="the layer expects"):
        ttkernels.load_adapter(target, tmp_path)
    for n, p in target.named_parameters():
        assert torch.equal(p, before[n]), n


def test_load_into_a_merged_model_is_refused(tmp_path):
    model = _trained("bert", rank=2)
    ttkernels.save_adapter(model, tmp_path)
    target = _trained("bert", rank=2)
    ttkernels.merge(target)
    with pytest.raises(AdapterMismatchError, match="merged"):
        ttkernels.load_adapter(target, tmp_path)
