"""TTLinear inside other training stacks: DDP (gloo, 2 CPU processes), accelerate, HF Trainer."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from utils import tiny_hf_model

import ttkernels


def _ddp_worker(rank: int, world: int, out_dir: str) -> None:
    # A file store rather than TCP: no free port to pick and race for.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same base weights and cores on every rank
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        ttkernels.patch(model, targets=["0", "2"], rank=2, init="gaussian")
        ddp = nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(100 + rank)  # different data per rank
        x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
        nn.functional.cross_entropy(ddp(x), y).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        frozen_grads = [p.grad for p in model.parameters() if not p.requires_grad]
        torch.save({"grads": grads, "frozen": all(g is None for g in frozen_grads)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    # The results are on disk. Leave without the interpreter's teardown: on the loaded 2-core CI VM gloo's threads
    # can make the C++ static destructors abort it ("terminate called without an active exception", SIGABRT).
    os._exit(0)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_all_reduces_core_gradients(tmp_path):
    # On the 2-core CI VM gloo sometimes aborts a rank ("terminate called without an active exception", SIGABRT,
    # ~1 run in 10-30, also with a barrier before teardown and with the file store); that is the transport, not
    # the code under test, so a SIGABRT gets a fresh rendezvous, up to 5 tries (once all 3 of 3 aborted in a full
    # CI run, hence also the os._exit in the worker). Any other failure fails at once.
    for attempt in range(5):
        run_dir = tmp_path / f"try{attempt}"
        run_dir.mkdir()
        try:
            mp.spawn(_ddp_worker, args=(2, str(run_dir)), nprocs=2, join=True)
            break
        except mp.ProcessExitedException as err:
            if err.signal_name != "SIGABRT" or attempt == 4:
                raise
    r0, r1 = (torch.load(run_dir / f"rank{r}.pt") for r in (0, 1))
    assert r0["frozen"] and r1["frozen"]
    assert r0["grads"].abs().sum() > 0
    torch.testing.assert_close(r0["grads"], r1["grads"])  # DDP averaged them across ranks


def test_accelerate_prepare_and_step():
    accelerate = pytest.importorskip("accelerate")
    model = tiny_hf_model("bert")
    ttkernels.patch(model, rank=2, modules_to_save=["classifier"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    acc = accelerate.Accelerator(cpu=True)
    model, opt = acc.prepare(model, opt)
    ids = torch.randint(3, 96, (4, 9))
    before = [c.detach().clone() for c in ttkernels.tt_layers(model)["bert.encoder.layer.0.attention.self.query"].cores]
    loss = model(input_ids=ids, labels=torch.tensor([0, 1, 2, 0])).loss
    acc.backward(loss)
    opt.step()
    after = ttkernels.tt_layers(model)["bert.encoder.layer.0.attention.self.query"].cores
    assert not torch.equal(after[-1], before[-1])  # zero-init last core moved on the first step


def test_hf_trainer_trains_only_the_cores(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_hf_model("bert")
    ttkernels.patch(model, rank=2, modules_to_save=["classifier"])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(3, 96, (9,), generator=g), "labels": int(i % 3)} for i in range(16)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, learning_rate=1e-2,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    transformers.Trainer(model=model, args=args, train_dataset=data).train()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen parameter {n} changed"
    assert any(torch.count_nonzero(layer.cores[-1]) for layer in ttkernels.tt_layers(model).values())
