"""Shared test helpers: tolerances per dtype, verbose comparisons, tiny HF model configs."""

from __future__ import annotations

import torch

#: (atol, rtol) relative to the reference's scale, per activation dtype.
TOLERANCES = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-4),
    torch.float16: (2e-3, 1e-2),
    torch.bfloat16: (1.6e-2, 3e-2),
}

#: Gradients go through more roundings in low precision (dy itself is rounded, then two GEMMs and the
#: core contraction), so their bounds are looser for bf16/fp16.
GRAD_TOLERANCES = {
    **TOLERANCES,
    torch.float16: (4e-3, 2e-2),
    torch.bfloat16: (3e-2, 6e-2),
}


def max_rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max(|expected|), in float64."""
    expected = expected.detach().double()
    scale = expected.abs().max().clamp_min(1e-30)
    return float((actual.detach().double() - expected).abs().max() / scale)


def assert_close_verbose(
    actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str, *, grad: bool = False
) -> None:
    """Assert |actual - expected| <= atol*scale + rtol*|expected| elementwise; report the worst entry."""
    atol, rtol = (GRAD_TOLERANCES if grad else TOLERANCES)[dtype]
    expected = expected.detach().double()
    actual = actual.detach().double()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    scale = float(expected.abs().max().clamp_min(1e-12))
    err = (actual - expected).abs()
    bound = atol * scale + rtol * expected.abs()
    bad = err > bound
    if bad.any():
        idx = torch.nonzero(bad)[0].tolist()
        raise AssertionError(
            f"{what} ({dtype}): {int(bad.sum())}/{bad.numel()} entries out of tolerance; worst abs err "
            f"{float(err.max()):.3e} (scale {scale:.3e}); first bad {idx}: got {float(actual[tuple(idx)]):.6e}, "
            f"expected {float(expected[tuple(idx)]):.6e}"
        )


def random_cores(shape: list[int], ranks: list[int], dtype=torch.float64, scale: float = 1.0) -> list[torch.Tensor]:
    """Random non-zero cores whose contraction has entries of order ``scale``."""
    return [
        torch.randn(ranks[i], k, ranks[i + 1], dtype=dtype) / ranks[i + 1] ** 0.5 * (scale if i == 0 else 1.0)
        for i, k in enumerate(shape)
    ]


def tiny_hf_model(kind: str, *, seed: int = 0):
    """A tiny randomly initialised HF transformers model built from a config (no download)."""
    import transformers as tf

    torch.manual_seed(seed)
    common = {"vocab_size": 96, "num_hidden_layers": 2}
    if kind == "llama":
        cfg = tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                             pad_token_id=0, **common)
        return tf.LlamaForCausalLM(cfg)
    if kind == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=96, bos_token_id=1, eos_token_id=2)
        return tf.GPT2LMHeadModel(cfg)
    configs = {
        "bert": tf.BertConfig,
        "roberta": tf.RobertaConfig,
        "deberta-v2": tf.DebertaV2Config,
        "deberta": tf.DebertaConfig,
    }
    cfg = configs[kind](hidden_size=32, intermediate_size=64, num_attention_heads=4, num_labels=3, pad_token_id=0,
                        **common)
    return tf.AutoModelForSequenceClassification.from_config(cfg)
