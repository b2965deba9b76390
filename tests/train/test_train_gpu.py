"""Training on CUDA: bf16 autocast, device-resident data, optional torch.compile (needs a GPU)."""
import json

import pytest
import torch

from statemix import train
from statemix.generate import generate


@pytest.mark.gpu
@pytest.mark.parametrize("arch, width, compile_", [("lstm", 8, False), ("bdlru-m2", 8, False), ("bdlru-m4", 8, True)])
def test_cuda_training_runs_in_bf16(tmp_path, arch, width, compile_):
    for split, n in (("train", 64), ("test", 32)):
        generate("in-context-recall", split, tmp_path / "data" / split, seed=0, sets={"num_examples": n, "seq_len": 32})
    out = tmp_path / "run"
    code = train.main(["--task", "in-context-recall", "--arch", arch, "--width", str(width), "--data",
                       str(tmp_path / "data"), "--out", str(out), "--set", "model.d_model=32", "--set",
                       "train.max_epochs=3", "--set", "train.batch_size=16", "--set", "track.enabled=false",
                       "--set", f"train.compile={compile_}"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["device"], metrics["precision"], metrics["peak_memory_kind"]) == ("cuda", "bf16",
                                                                                      "cuda_max_allocated")
    assert metrics["status"] == "ok" and metrics["epochs"] == 3 and 0 < metrics["peak_memory_bytes"]
    assert torch.isfinite(torch.tensor(metrics["test_loss"]))


@pytest.mark.gpu
def test_training_steps_never_synchronise_with_the_host(tmp_path):
    """The epoch loop must queue work only: any per-step host sync raises under sync debug mode 'error'."""
    from statemix import config
    from statemix.trainer import Split, Trainer

    device = torch.device("cuda")
    g = torch.Generator(device).manual_seed(0)
    x = torch.randint(16, (64, 32), device=device, generator=g)
    y = torch.randint(16, (64, 32), device=device, generator=g)
    model = torch.nn.Sequential(torch.nn.Embedding(16, 32), torch.nn.Linear(32, 32), torch.nn.GELU(),
                                torch.nn.Linear(32, 16)).to(device)
    cfg = config.load(overrides=["train.batch_size=16", "train.grad_clip=1.0"]).train
    trainer = Trainer(model, Split(x, y), Split(x, y), 16, cfg, tmp_path, device, {})
    trainer.train_epoch()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run = trainer.train_epoch()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert run["steps"] == 4 and bool(run["finite"])
