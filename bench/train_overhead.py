"""mpops' trainer against a bare hand-written torch loop, and against PyTorch Lightning's Trainer.

    .venv/bin/python bench/train_overhead.py [--models mlp,transformer] [--precisions fp32,bf16,fp16]
        [--epochs 6] [--repeats 3] [--no-lightning]

Same model (pipeline.core.models), initial weights, data order (pipeline.core.train.batch_order), batch size
and precision for all three; each timed from the same warm-up step to the end, interleaved and
repeated, medians reported. mpops does more per step than the bare loop (gradient unscale and norm,
loss-scale read, health records): the ratio says what that costs. Target: mpops/bare >= 0.97 and
mpops faster than Lightning. Lightning is a bench-only extra: `pip install -e '.[bench]'`.
Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch
from torch import nn

from pipeline.core.config import Config, TrainConfig
from pipeline.core.data import Split, load_dataset, split_dataset
from pipeline.core.models import ModelSpec, build_model
from pipeline.core.device import resolve_device
from pipeline.core.train import batch_order, train

DEVICE = torch.device("cpu")  # --device sets it
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed", "bf16-true": "bf16-true"}


def _setup(split: Split, cfg: TrainConfig):
    spec = ModelSpec(split.x_train.shape[1], len(split.classes), cfg.hidden_size, cfg.hidden_layers, cfg.model)
    torch.manual_seed(cfg.seed)
    model = build_model(spec, split.x_train).to(DEVICE)
    x, y = torch.from_numpy(split.x_train).to(DEVICE), torch.from_numpy(split.y_train).to(DEVICE)
    return model, x, y, batch_order(len(y), cfg.batch_size, cfg.epochs, cfg.seed)


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(split: Split, cfg: TrainConfig, precision: str) -> float:
    """The nanoGPT three lines: autocast, GradScaler(enabled=fp16), scale/step/update. Nothing else."""
    model, x, y, batches = _setup(split, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=precision == "fp16")
    samples, start = 0, 0.0
    for step, idx in enumerate(batches):
        if step == cfg.warmup_steps:
            _sync()
            start = time.perf_counter()
        ix = torch.from_numpy(idx).to(DEVICE)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(x[ix]).float(), y[ix])
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        samples += len(idx) if step >= cfg.warmup_steps else 0
    _sync()
    return samples / (time.perf_counter() - start)


def mpops_trainer(split: Split, cfg: TrainConfig, precision: str) -> float:
    return train(split, cfg, precision, device=DEVICE).samples_per_s


def lightning_trainer(split: Split, cfg: TrainConfig, precision: str) -> float:
    import lightning as L

    model, x, y, batches = _setup(split, cfg)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, batch, _):
            xb, yb = batch
            return nn.functional.cross_entropy(self.net(xb).float(), yb)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    class Clock(L.Callback):
        samples, start = 0, 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == cfg.warmup_steps:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step > cfg.warmup_steps:
                self.samples += len(batch[1])

    # The same batches in the same order: one "epoch" of the whole precomputed schedule.
    data = [(x[torch.from_numpy(i).to(DEVICE)].cpu(), y[torch.from_numpy(i).to(DEVICE)].cpu()) for i in batches]
    clock = Clock()
    trainer = L.Trainer(accelerator=DEVICE.type if DEVICE.type == "cpu" else "gpu", devices=1, precision=LIGHTNING_PRECISION[precision], max_epochs=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[clock], num_sanity_val_steps=0)
    trainer.fit(Module(), train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    return clock.samples / (time.perf_counter() - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mlp,transformer")
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-lightning", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    global DEVICE
    DEVICE = resolve_device(args.device)
    cfg = Config()
    split = split_dataset(load_dataset(cfg.data.path), cfg.data.test_size, cfg.data.split_seed)
    runners = {"bare": bare_loop, "mpops": mpops_trainer}
    if not args.no_lightning:
        try:
            import lightning  # noqa: F401

            runners["lightning"] = lightning_trainer
        except ImportError:
            print("lightning not installed (pip install -e '.[bench]'): comparing with the bare loop only")
    figures: dict = {}
    for model in args.models.split(","):
        # fp16 has no fast path on most CPUs: a smaller transformer keeps this bench to minutes
        tcfg = replace(cfg.train, model=model, epochs=args.epochs, checkpoint_every=0,
                       hidden_size=cfg.train.hidden_size if model == "mlp" else 512)
        for precision in args.precisions.split(","):
            active = dict(runners)
            if precision == "fp16" and DEVICE.type == "cpu" and active.pop("lightning", None):
                print("lightning left out for fp16 on CPU: its Trainer replaces 16-mixed by bf16-mixed there")
            times = {name: [] for name in active}
            for _ in range(args.repeats):
                for name, run in active.items():
                    times[name].append(run(split, tcfg, precision))
            med = {name: statistics.median(v) for name, v in times.items()}
            row = {f"{n}_samples_per_s": round(v, 1) for n, v in med.items()}
            row["mpops_vs_bare"] = round(med["mpops"] / med["bare"], 3)
            if "lightning" in med:
                row["mpops_vs_lightning"] = round(med["mpops"] / med["lightning"], 3)
            figures[f"{model}/{precision}"] = row
            print(f"{model:11s} {precision:5s} " + "  ".join(f"{n} {v:9,.0f}" for n, v in med.items())
                  + f"   mpops/bare {row['mpops_vs_bare']:.3f}"
                  + (f"   mpops/lightning {row['mpops_vs_lightning']:.3f}" if "lightning" in med else ""))
    print(json.dumps({"bench": "train_overhead", "torch": torch.__version__, "batch_size": cfg.train.batch_size,
                      "epochs": args.epochs, "repeats": args.repeats, "threads": torch.get_num_threads(),
                      "figures": figures}))


if __name__ == "__main__":
    main()
