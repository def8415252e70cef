"""The AVX512-BF16 trap of bitsandbytes' CPU 4-bit layers, shown on any CPU.

`Linear4bit.forward` repacks its weight into a CPU inference layout on the first eval-mode forward
without grad when `support_avx512bf16_for_cpu` is set (bitsandbytes sets it from the CPU flags).
After that, training forwards take the packed `gemv_4bit` path, whose result carries no gradient
back through the base weight, so the LoRA layers below get wrong gradients. Here we set the flag
ourselves (this CI CPU has no AVX512-BF16), show that the gradients after an eval are wrong, and
that `keep_reference_cpu_kernels` restores them and keeps later evals from repacking.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_eval_repack_breaks_gradients_and_the_fix_restores_them(tmp_path):
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from taskdecomp.models import bnb_config, keep_reference_cpu_kernels

    # A small random Llama, quantised by the real transformers/bitsandbytes path (NF4 + double quant).
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, use_cache=False,
    )  # fmt: skip
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "tiny")
    base = AutoModelForCausalLM.from_pretrained(
        tmp_path / "tiny", quantization_config=bnb_config(torch.float32), device_map={"": "cpu"}
    )
    lora = LoraConfig(
        r=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"], layers_to_transform=[0, 3]
    )
    model = get_peft_model(base, lora)
    ids = torch.randint(0, 256, (2, 48))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]

    def grads() -> dict[str, torch.Tensor]:
        model.train()
        model.zero_grad()
        model(**batch, labels=ids).loss.backward()
        # lora_B of the FIRST layer: its gradient has travelled back through all 4-bit layers above it
        # (bitsandbytes >= 0.50 leaves no gradient at all behind the packed path: count it as zero)
        return {
            n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for n, p in model.named_parameters()
            if "layers.0." in n and "lora_B" in n
        }

    def rel_err(a: dict, b: dict) -> float:
        return max(float((a[n] - b[n]).norm() / b[n].norm()) for n in b)

    def evaluate() -> None:
        model.eval()
        with torch.no_grad():
            model(**batch)

    reference = grads()
    assert all(g.norm() > 0 for g in reference.values())

    for m in layers:  # what Linear4bit.__init__ sets on a CPU with AVX512-BF16
        m.support_avx512bf16_for_cpu = True
    evaluate()
    assert all(m.weight.quant_state.packing_format_for_cpu for m in layers)  # repacked by the eval
    broken = grads()
    assert rel_err(broken, reference) > 0.1

    assert keep_reference_cpu_kernels(model) == len(layers)
    assert not any(m.weight.quant_state.packing_format_for_cpu for m in layers)  # repack undone
    assert rel_err(grads(), reference) < 0.02  # (the inverse re-quantises absmax: close, not bit-exact)
    evaluate()
    assert not any(m.weight.quant_state.packing_format_for_cpu for m in layers)  # no repack any more
    assert rel_err(grads(), reference) < 0.02
