"""PyTorch peer of bench/infer.ts (PEERS.md W3, `llama` model): greedy generation with a KV cache.

Loads the same weights (model.safetensors of the Plinth folder, read here without the safetensors
package), preallocates the K/V cache, prefills the prompt in one pass (logits of the last position
only), then decodes one token per forward pass, appending K/V in place and taking the argmax.

Config (JSON argv[1]): dir, prompt_ids (16), new_tokens (256), pp_ids (512), trials, threads.
Prints: decode tokens/s, prefill ms (16 tokens), prompt processing tokens/s (512 tokens), greedy ids.
"""
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, quiet_wait_limit, read_config, run_trials, setup_torch, summarise, time_trial, wait_for_quiet  # noqa: E402

cfg = read_config()
torch = setup_torch(cfg.get("threads", 2))
F = torch.nn.functional


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{name}: {info['dtype']}"
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info["shape"])
    return out


class Llama:
    """Llama inference with a preallocated KV cache; weights as plain tensors, x @ W.T via F.linear."""

    def __init__(self, w, c, max_len):
        self.w = w
        self.L = c["num_hidden_layers"]
        self.H = c["num_attention_heads"]
        self.KVH = c.get("num_key_value_heads", self.H)
        self.C = c["hidden_size"]
        self.D = self.C // self.H
        self.eps = c.get("rms_norm_eps", 1e-6)
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, self.D, 2).float() / self.D))
        ang = torch.outer(torch.arange(max_len).float(), inv)
        emb = torch.cat((ang, ang), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.k = torch.zeros(self.L, 1, self.KVH, max_len, self.D)
        self.v = torch.zeros(self.L, 1, self.KVH, max_len, self.D)
        self.pos = 0

    def norm(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w[name]

    @staticmethod
    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def forward(self, ids):
        """ids (1, T) → logits of the last position (V,); appends T positions to the cache."""
        T = ids.shape[1]
        p0, p1 = self.pos, self.pos + T
        H, KVH, D = self.H, self.KVH, self.D
        rep = H // KVH
        cos, sin = self.cos[p0:p1], self.sin[p0:p1]
        x = self.w["model.embed_tokens.weight"][ids]
        mask = None
        if T > 1:
            mask = torch.ones(T, p1, dtype=torch.bool).tril(diagonal=p0)
        for i in range(self.L):
            p = f"model.layers.{i}."
            h = self.norm(x, p + "input_layernorm.weight")
            q = F.linear(h, self.w[p + "self_attn.q_proj.weight"]).view(1, T, H, D).transpose(1, 2)
            k = F.linear(h, self.w[p + "self_attn.k_proj.weight"]).view(1, T, KVH, D).transpose(1, 2)
            v = F.linear(h, self.w[p + "self_attn.v_proj.weight"]).view(1, T, KVH, D).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            self.k[i, :, :, p0:p1] = k
            self.v[i, :, :, p0:p1] = v
            # grouped-query attention: the rep query heads of a KV head share its keys and values
            qg = q.view(1, KVH, rep, T, D)
            kc = self.k[i, :, :, :p1].unsqueeze(2)  # (1, KVH, 1, p1, D)
            vc = self.v[i, :, :, :p1].unsqueeze(2)
            att = (qg @ kc.transpose(-2, -1)) * (1.0 / math.sqrt(D))
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            y = (att.softmax(dim=-1) @ vc).view(1, H, T, D).transpose(1, 2).reshape(1, T, H * D)
            x = x + F.linear(y, self.w[p + "self_attn.o_proj.weight"])
            h = self.norm(x, p + "post_attention_layernorm.weight")
            g = F.linear(h, self.w[p + "mlp.gate_proj.weight"])
            u = F.linear(h, self.w[p + "mlp.up_proj.weight"])
            x = x + F.linear(F.silu(g) * u, self.w[p + "mlp.down_proj.weight"])
        self.pos = p1
        last = self.norm(x[0, -1], "model.norm.weight")
        return F.linear(last, self.w["lm_head.weight"])


def trials_after_setup(setup, fn, trials):
    """run_trials, with an untimed setup() before every trial (the prefill before a decode)."""
    setup()
    fn()
    budget = [2 * quiet_wait_limit()]

    def wait():
        waited, _ = wait_for_quiet(min(quiet_wait_limit(), max(0.0, budget[0])))
        budget[0] -= waited

    wait()
    done = []
    clean = 0
    while clean < trials and len(done) < 3 * trials:
        setup()
        t = time_trial(fn)
        done.append(t)
        if t["clean"]:
            clean += 1
        elif clean < trials:
            wait()
    return summarise(done)


def main():
    d = cfg["dir"]
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    prompt = torch.tensor([cfg["prompt_ids"]], dtype=torch.long)
    pp = torch.tensor([cfg["pp_ids"]], dtype=torch.long)
    n_new = cfg["new_tokens"]
    trials = cfg.get("trials", 5)
    model = Llama(w, c, max(prompt.shape[1] + n_new + 1, pp.shape[1]))
    state = {"ids": []}

    def decode_setup():
        model.pos = 0
        state["ids"] = [int(model.forward(prompt).argmax())]

    def decode():
        ids = state["ids"]
        for _ in range(n_new):
            ids.append(int(model.forward(torch.tensor([[ids[-1]]], dtype=torch.long)).argmax()))

    def prefill():
        model.pos = 0
        model.forward(prompt).argmax()

    def prompt_processing():
        model.pos = 0
        model.forward(pp).argmax()

    with torch.inference_mode():
        m_decode = trials_after_setup(decode_setup, decode, trials)
        m_prefill = run_trials(prefill, 20)
        m_pp = run_trials(prompt_processing, trials)
    emit({
        "decode_tokens_per_s": n_new / m_decode["median_s"],
        "decode": m_decode,
        "prefill_ms": m_prefill["median_s"] * 1000,
        "prefill": m_prefill,
        "pp_tokens_per_s": pp.shape[1] / m_pp["median_s"],
        "pp": m_pp,
        "greedy_ids": state["ids"],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    })


main()
