"""Time to quality peer: character-level tinyshakespeare (first 90% train, last 10% validation)
with W2 config (a); trains until the validation loss reaches the target and reports the wall time."""
import math
import time

from common import emit, read_config, setup_torch

cfg = read_config()
torch = setup_torch(cfg.get("threads", 2))
import models  # noqa: E402  (after torch is set up)

text = open(cfg["data"], encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data))
train_data, val_data = data[:n], data[n:]
B, T = cfg["batch"], cfg["block"]
torch.manual_seed(cfg.get("seed", 0))
model = models.GPT(len(chars), cfg["layers"], cfg["heads"], cfg["width"], T)
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=cfg["lr"], betas=(0.9, 0.99), eps=1e-8)
g = torch.Generator().manual_seed(1)


def batch(src, gen):
    ix = torch.randint(len(src) - T - 1, (B,), generator=gen)
    return torch.stack([src[i:i + T] for i in ix]), torch.stack([src[i + 1:i + 1 + T] for i in ix])


val_gen = torch.Generator().manual_seed(2)
val_batches = [batch(val_data, val_gen) for _ in range(cfg["eval_batches"])]


def lr_at(step):
    warm, total, lr, min_lr = cfg["warmup"], cfg["max_steps"], cfg["lr"], cfg["lr"] / 10
    if step < warm:
        return lr * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, p))) * (lr - min_lr)


t0 = time.perf_counter()
curve = []
reached = None
for step in range(cfg["max_steps"]):
    for group in opt.param_groups:
        group["lr"] = lr_at(step)
    x, y = batch(train_data, g)
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if (step + 1) % cfg["eval_every"] == 0:
        model.eval()
        with torch.no_grad():
            v = sum(model(a, b).item() for a, b in val_batches) / len(val_batches)
        model.train()
        curve.append([step + 1, time.perf_counter() - t0, v])
        if v <= cfg["target"]:
            reached = curve[-1]
            break
emit({"reached": reached, "curve": curve, "torch": torch.__version__, "threads": torch.get_num_threads()})
