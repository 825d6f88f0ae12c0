"""patch() on tiny HF transformers models built from configs: LLaMA, BERT, RoBERTa, DeBERTa v1/v2, GPT-2."""

import pytest
import torch
from utils import tiny_hf_model

import ttkernels
from ttkernels import SettingError, TTLinear

MODELS = {
    "llama": ["q_proj", "v_proj"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"],
    "deberta": ["in_proj"],
    "gpt2": ["c_attn"],
}


def _inputs(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 96, (2, 7), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _logits(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("kind", list(MODELS))
def test_default_targets_wrap_the_right_modules(kind):
    model = tiny_hf_model(kind)
    before = _logits(model, _inputs(model))
    ttkernels.patch(model, rank=2)  # targets=None -> the model type's default
    layers = ttkernels.tt_layers(model)
    assert layers and all(name.split(".")[-1] in MODELS[kind] for name in layers)
    assert len(layers) == 2 * len(MODELS[kind])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".cores." in n for n in trainable)
    count = ttkernels.trainable_parameters(model)
    assert count.trainable == count.tt_cores == sum(
        layer.ranks[i] * k * layer.ranks[i + 1] for layer in layers.values() for i, k in enumerate(layer.shape)
    )
    torch.testing.assert_close(_logits(model, _inputs(model)), before, rtol=0, atol=0)  # ΔW = 0 at step 0


@pytest.mark.parametrize("kind", list(MODELS))
def test_training_lowers_loss_merge_unmerge_unpatch(kind):
    model = tiny_hf_model(kind)
    inputs = _inputs(model)
    original_weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    original_modules = {n: m for n, m in model.named_modules() if n.split(".")[-1] in MODELS[kind]}
    ttkernels.patch(model, rank=3, alpha=4.0, init="zero")
    if kind in ("llama", "gpt2"):
        labels = inputs["input_ids"]
    else:
        labels = torch.tensor([0, 2])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    model.train()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses

    unmerged = _logits(model, inputs)
    ttkernels.merge(model)
    torch.testing.assert_close(_logits(model, inputs), unmerged, rtol=1e-4, atol=1e-4)
    ttkernels.unmerge(model)
    for name, layer in ttkernels.tt_layers(model).items():
        w0 = original_weights[name + ".weight"]
        torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(_logits(model, inputs), unmerged, rtol=1e-4, atol=1e-4)

    # unpatch of an unmerged model: the very same modules and bit-exact weights come back
    fresh = tiny_hf_model(kind)
    ttkernels.patch(fresh, rank=3, init="gaussian")
    ttkernels.unpatch(fresh)
    assert not ttkernels.tt_layers(fresh)
    reference = tiny_hf_model(kind)
    for (n, p), (_, q) in zip(fresh.named_parameters(), reference.named_parameters(), strict=True):
        assert torch.equal(p, q), n
        assert p.requires_grad == q.requires_grad, n

    ttkernels.unpatch(model)
    for name, module in original_modules.items():
        assert model.get_submodule(name) is module


def test_unpatch_merge_true_keeps_the_update():
    model = tiny_hf_model("bert")
    inputs = _inputs(model)
    ttkernels.patch(model, rank=2, init="gaussian")
    adapted = _logits(model, inputs)
    ttkernels.unpatch(model, merge=True)
    assert not ttkernels.tt_layers(model)
    torch.testing.assert_close(_logits(model, inputs), adapted, rtol=1e-4, atol=1e-4)


def test_regex_targets_per_target_shapes_and_exclude():
    model = tiny_hf_model("llama")
    ttkernels.patch(
        model,
        targets=r".*layers\.0\.self_attn\.(q|v)_proj",
        shape={"q_proj": [4, 8, 8, 4], "v_proj": [4, 4, 4, 8]},
        rank={"q_proj": 2, "v_proj": [1, 2, 3]},
    )
    layers = ttkernels.tt_layers(model)
    assert set(layers) == {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"}
    q, v = layers["model.layers.0.self_attn.q_proj"], layers["model.layers.0.self_attn.v_proj"]
    assert (q.m, q.n, q.shape, q.ranks) == (32, 32, [4, 8, 8, 4], [1, 2, 2, 2, 1])
    assert (v.m, v.n, v.shape, v.ranks) == (16, 32, [4, 4, 4, 8], [1, 1, 2, 3, 1])

    other = tiny_hf_model("llama")
    ttkernels.patch(other, targets=["q_proj", "v_proj"], exclude=["layers.1.self_attn.v_proj"])
    assert "model.layers.1.self_attn.v_proj" not in ttkernels.tt_layers(other)
    assert len(ttkernels.tt_layers(other)) == 3


def test_modules_to_save_stay_trainable():
    model = tiny_hf_model("bert")
    ttkernels.patch(model, rank=2, modules_to_save=["classifier"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trainable
    head = sum(p.numel() for p in model.classifier.parameters())
    count = ttkernels.trainable_parameters(model)
    assert count.trainable == count.tt_cores + head
    assert ttkernels.adapter_size_bytes(model) == 2 * count.trainable
    assert ttkernels.adapter_size_bytes(model, torch.float32) == 4 * count.trainable


def test_gpt2_conv1d_is_handled_with_its_transposed_weight():
    model = tiny_hf_model("gpt2")
    inputs = _inputs(model)
    ttkernels.patch(model, rank=2, init="gaussian")
    layer = next(iter(ttkernels.tt_layers(model).values()))
    assert layer.kind == "conv1d" and (layer.m, layer.n) == (96, 32)
    x = torch.randn(5, 32)
    expected = layer.base_layer(x).double() + layer.alpha * x.double() @ layer.delta_weight(torch.float64).t()
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-4, atol=1e-4)
    adapted = _logits(model, inputs)
    ttkernels.merge(model)
    torch.testing.assert_close(_logits(model, inputs), adapted, rtol=1e-4, atol=1e-4)


def test_clear_errors():
    model = tiny_hf_model("bert")
    with pytest.raises(SettingError, match="no linear layer of BertForSequenceClassification matches targets"):
        ttkernels.patch(model, targets=["q_proj"])
    with pytest.raises(ValueError, match="not linear layers"):
        ttkernels.patch(model, targets=["LayerNorm"])
    with pytest.raises(ValueError, match="modules_to_save: no module"):
        ttkernels.patch(model, targets=["query"], modules_to_save=["head"])
    assert not ttkernels.tt_layers(model)  # a refused patch changes nothing
    with pytest.raises(ttkernels.TTShapeError, match="product"):
        ttkernels.patch(model, targets=["query", "value"], shape={"value": [4, 4, 4]})
    assert not ttkernels.tt_layers(model) and all(p.requires_grad for p in model.parameters())
    ttkernels.patch(model, targets=["query"])
    with pytest.raises(RuntimeError, match="already patched"):
        ttkernels.patch(model, targets=["value"])
    with pytest.raises(ValueError, match="no default targets for model type None"):
        ttkernels.patch(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    with pytest.raises(ValueError, match="no TTLinear layers"):
        ttkernels.merge(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_wrapped_layer_repr_and_weight_passthrough():
    model = tiny_hf_model("roberta")
    ttkernels.patch(model, rank=2)
    layer = next(iter(ttkernels.tt_layers(model).values()))
    assert isinstance(layer, TTLinear)
    assert layer.weight is layer.base_layer.weight
    assert "shape=[32, 32]" in repr(layer)


def test_multihead_attention_out_proj_is_refused():
    model = torch.nn.Sequential(torch.nn.MultiheadAttention(16, 2))
    with pytest.raises(ValueError, match="reads its weight directly"):
        ttkernels.patch(model, targets=["out_proj"])
