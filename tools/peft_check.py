#!/usr/bin/env python3
"""peft_check.py: an independent float64 PyTorch check of qvac's loss.

Loads a BitNet b1.58 base model from a GGUF file and, optionally, a LoRA
adapter (a PEFT directory or qvac's adapter GGUF), runs the model on the
rows that `qvac eval --dump DIR` wrote, and compares the mean NLL with
the loss qvac reported in DIR/meta.json.

Everything here is written from the file formats and the published maths
(GGUF v3, ggml's TQ2_0 block, safetensors, BitNet b1.58's BitLinear, LoRA,
RoPE, RMSNorm); it shares no code with qvac's C sources, so agreement
checks qvac's loader, adapter files and forward pass end to end.

The model, per layer (x the residual stream, one row = one sequence from
position 0, causal attention within it):
  h = rmsnorm(x) * attn_norm;  q, k, v = BitLinear(h);  RoPE on q, k
  a = softmax(q k^T / sqrt(hd)) v   (GQA: query head i reads kv head i / g)
  x += BitLinear_o(rmsnorm(a) * attn_sub_norm)        (sub-norm if present)
  h = rmsnorm(x) * ffn_norm
  x += BitLinear_down(rmsnorm(act(gate(h)) * up(h)) * ffn_sub_norm)
  logits = (rmsnorm(x) * output_norm) head^T
BitLinear(x) = (int8(x) . codes^T) / s_x * w_scale + (alpha/r) B A x, where
int8(x) = clamp(round_half_away(x * s_x), -128, 127), s_x = 127 / max|x|
(max|x| at least 1e-5), computed in float32 as qvac does; LoRA sees the
unquantised x. A base's llama.cpp scale tensors blk.N.<lin>.scale multiply
the weight, and for gate and up the LoRA term too (llama.cpp's build_ffn).
Weights read: TQ2_0, qvac's I8 codes + <name>.scale, F32/F16/BF16 (ternary
as stored, or absmean-quantised when latent); embeddings F32/F16/BF16/Q8_0.

Architectures: llama.cpp `bitnet` (SiLU, NEOX RoPE, tied head),
`bitnet-b1.58` (squared ReLU, NEOX, tied), `qvac-bitnet` (keys
`qvac-bitnet.activation` relu2|silu and `qvac-bitnet.rope.type` neox|norm,
`output.weight` when present). Only `act_quant: bitnet` dumps are checked.

  tools/peft_check.py --model M.gguf [--adapter A.gguf | --peft DIR] --dump DIR [--json]

Exit status 0 only when |torch - qvac| / |qvac| <= --tol (1e-3). When the
dump has logits.f32 the largest |logit difference| is reported too (it is
dominated by the rare int8 rounding ties that float64 inputs flip).
Needs numpy and torch (Debian: python3-numpy, python3-torch).
"""
import argparse
import json
import math
import mmap
import os
import struct
import sys

import numpy as np
import torch

LINS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
PEFT_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v",
              "o_proj": "attn_output", "gate_proj": "ffn_gate",
              "up_proj": "ffn_up", "down_proj": "ffn_down"}

# ---- GGUF v3 -----------------------------------------------------------------

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
          7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class GGUF:
    """Header, key/values and tensor infos of a GGUF v3 file; tensors are
    decoded on demand (numpy arrays in torch order: [ne1, ne0])."""

    def __init__(self, path):
        with open(path, "rb") as f:  # mapped, not read whole
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.pos = 0
        magic, version = self.buf[:4], self._u("<I", 4)
        if magic != b"GGUF" or version != 3:
            raise SystemExit(f"{path}: not a GGUF v3 file")
        n_tensors, n_kv = self._u("<Q"), self._u("<Q")
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u("<I"))
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._str()
            ne = [self._u("<Q") for _ in range(self._u("<I"))]
            self.tensors[name] = (self._u("<I"), ne, self._u("<Q"))
        align = self.kv.get("general.alignment", 32)
        self.data = (self.pos + align - 1) // align * align

    def _u(self, fmt, at=None):
        if at is not None:
            self.pos = at
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        n = self._u("<Q")
        s = self.buf[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s

    def _value(self, t):
        if t == 8:
            return self._str()
        if t == 9:
            et, n = self._u("<I"), self._u("<Q")
            return [self._value(et) for _ in range(n)]
        return self._u(SCALAR[t])

    def has(self, name):
        return name in self.tensors

    def get(self, name):
        t, ne, off = self.tensors[name]
        n = int(np.prod(ne))
        start = self.data + off
        raw = np.frombuffer(self.buf, np.uint8, offset=start)
        shape = list(reversed(ne))
        if t == 0:
            v = raw[:4 * n].view("<f4").astype(np.float64)
        elif t == 1:
            v = raw[:2 * n].view("<f2").astype(np.float64)
        elif t == 30:  # bf16: the high half of an f32
            v = (raw[:2 * n].view("<u2").astype(np.uint32) << 16).view("<f4").astype(np.float64)
        elif t == 24:  # I8
            v = raw[:n].view(np.int8).astype(np.float64)
        elif t == 8:  # Q8_0: per 32 values f16 d, 32 int8
            b = raw[:n // 32 * 34].reshape(-1, 34)
            d = b[:, :2].copy().view("<f2").astype(np.float64)
            v = (b[:, 2:].view(np.int8).astype(np.float64) * d).reshape(-1)
        elif t == 35:  # TQ2_0: per 256 weights qs[64], f16 d
            b = raw[:n // 256 * 66].reshape(-1, 66)
            d = b[:, 64:66].copy().view("<f2").astype(np.float64)
            qs = b[:, :64].reshape(-1, 2, 1, 32)  # [block, j, -, m]
            shift = np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
            q = (qs >> shift) & 3  # weight 128j + 32l + m at bits 2l
            v = ((q.reshape(-1, 256).astype(np.float64) - 1.0) * d).reshape(-1)
        else:
            raise SystemExit(f"tensor {name}: ggml type {t} is not read by this check")
        return v.reshape(shape)


# ---- the model -----------------------------------------------------------------

def f32(x):
    return float(np.float32(x))


def read_linear(g, name):
    """BitLinear weight as codes * scale (float64 [N, K]), as qvac reads it."""
    t = g.tensors[name][0]
    w = g.get(name)
    if t == 24:  # qvac's I8 codes + "<name>.scale"
        return w * g.get(name + ".scale").item()
    if t in (0, 1, 30):
        mags = np.unique(np.abs(w[w != 0]))
        if len(mags) > 1:  # a latent checkpoint: absmean, rounded half to even
            s = np.float32(max(np.float32(np.abs(w).mean()), np.float32(1e-5)))
            q = np.clip(np.rint(w.astype(np.float32) * (np.float32(1) / s)), -1, 1)
            return q.astype(np.float64) * float(s)
    return w  # TQ2_0: (q - 1) * d per block, d the tensor scale


def load_model(path):
    g = GGUF(path)
    arch = g.kv["general.architecture"]
    A = arch

    def key(k, default=None):
        v = g.kv.get(f"{A}.{k}", default)
        if v is None:
            raise SystemExit(f"{path}: {A}.{k} is missing")
        return v

    if arch == "bitnet" and "qvac.activation" in g.kv:  # qvac 0.1 files
        act, neox, head_ok = g.kv["qvac.activation"], False, True
    elif arch == "bitnet":
        act, neox, head_ok = "silu", True, False
    elif arch in ("bitnet-b1.58", "bitnet-25"):
        act, neox, head_ok = "relu2", True, False
    elif arch == "qvac-bitnet":
        act, rt, head_ok = key("activation"), key("rope.type"), True
        if act not in ("silu", "relu2") or rt not in ("neox", "norm"):
            raise SystemExit(f"{path}: activation {act!r} / rope.type {rt!r}")
        neox = rt == "neox"
    else:
        raise SystemExit(f"{path}: architecture {arch!r} is not a BitNet model")
    if g.has("output.weight") and not head_ok:
        raise SystemExit(f"{path}: '{arch}' ties its head; the file has output.weight")
    freq_scale = 1.0
    if key("rope.scaling.type", "none") == "linear":
        freq_scale = 1.0 / f32(key("rope.scaling.factor", 1.0))
    m = {
        "arch": arch, "act": act, "neox": neox,
        "dim": key("embedding_length"), "n_layers": key("block_count"),
        "ffn": key("feed_forward_length"), "n_heads": key("attention.head_count"),
        "n_kv": key("attention.head_count_kv", key("attention.head_count")),
        "theta": f32(key("rope.freq_base", 10000.0)), "freq_scale": freq_scale,
        "eps": f32(key("attention.layer_norm_rms_epsilon")),
        "emb": torch.from_numpy(g.get("token_embd.weight")),
        "out_norm": torch.from_numpy(g.get("output_norm.weight")),
    }
    m["head"] = (torch.from_numpy(g.get("output.weight")) if g.has("output.weight")
                 else m["emb"])
    m["layers"] = []
    for l in range(m["n_layers"]):
        L = {}
        for n in ("attn_norm", "ffn_norm", "attn_sub_norm", "ffn_sub_norm"):
            if g.has(f"blk.{l}.{n}.weight"):
                L[n] = torch.from_numpy(g.get(f"blk.{l}.{n}.weight"))
        for lin in LINS:
            w = read_linear(g, f"blk.{l}.{lin}.weight")
            # llama.cpp's per-tensor scale: multiplies the product; up and
            # gate apply it after the LoRA term too (build_ffn)
            mul = 1.0
            if g.has(f"blk.{l}.{lin}.scale"):
                sc = g.get(f"blk.{l}.{lin}.scale").item()
                w = w * sc
                mul = sc if lin in ("ffn_gate", "ffn_up") else 1.0
            L[lin] = {"w": torch.from_numpy(w), "lora_mul": mul}
        m["layers"].append(L)
    return m


# ---- adapters --------------------------------------------------------------------

def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack_from("<Q", buf, 0)[0]
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = np.frombuffer(buf, np.uint8, count=b - a, offset=8 + n + a)
        dt = info["dtype"]
        if dt == "F32":
            v = raw.view("<f4")
        elif dt == "F16":
            v = raw.view("<f2")
        elif dt == "BF16":
            v = (raw.view("<u2").astype(np.uint32) << 16).view("<f4")
        else:
            raise SystemExit(f"{path}: tensor {name} is {dt}; F32, F16, BF16 are read")
        out[name] = torch.from_numpy(v.astype(np.float64).reshape(info["shape"]))
    return out


def load_peft(d):
    """{(layer, lin): (A [r, K], B [N, r], alpha / r)} from a PEFT directory."""
    with open(os.path.join(d, "adapter_config.json")) as f:
        cfg = json.load(f)
    for k in ("rank_pattern", "alpha_pattern", "use_dora", "fan_in_fan_out"):
        if cfg.get(k):
            raise SystemExit(f"{d}: {k} is set; this check reads plain LoRA")
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    targets = cfg.get("target_modules") or []
    tensors = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    ad = {}
    for name, a in tensors.items():
        if ".lora_A." not in name:
            continue
        parts = name.split(".")
        i = parts.index("layers")
        layer, module = int(parts[i + 1]), parts[i + 3]
        if isinstance(targets, list) and not any(
                t == module or t.endswith("." + module) for t in targets):
            raise SystemExit(f"{d}: {name}: {module} is not in target_modules")
        b = tensors[name.replace(".lora_A.", ".lora_B.")]
        if a.shape[0] != r or b.shape[1] != r:
            raise SystemExit(f"{d}: {name}: rank {a.shape[0]} is not r = {r}")
        ad[(layer, PEFT_NAMES[module])] = (a, b, scale)
    return ad


def load_gguf_adapter(path):
    g = GGUF(path)
    alpha = f32(g.kv["adapter.lora.alpha"])
    ad = {}
    for name in g.tensors:
        if not name.endswith(".lora_a"):
            continue
        _, layer, lin = name.split(".")[:3]
        a = torch.from_numpy(g.get(name))            # ne {K, r} -> [r, K]
        b = torch.from_numpy(g.get(name[:-1] + "b"))  # ne {r, N} -> [N, r]
        r = g.kv.get("qvac.lora.rank", a.shape[0])
        ad[(int(layer), lin)] = (a, b, alpha / r)
    return ad


# ---- forward -----------------------------------------------------------------------

def rmsnorm(x, g, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * g


def quantize_act(x):
    """qvac's per-token int8 (in float32): value and scale as float64."""
    x32 = x.to(torch.float32)
    amax = x32.abs().amax(-1, keepdim=True).clamp_min(1e-5)
    s = torch.tensor(127.0, dtype=torch.float32) / amax
    v = x32 * s
    q = (torch.sign(v) * torch.floor(v.abs() + 0.5)).clamp(-128, 127)
    return q.to(torch.float64), s.to(torch.float64)


def bitlinear(x, xq, m_lin, lora):
    y = (xq[0] @ m_lin["w"].T) / xq[1]
    if lora is not None:
        a, b, scale = lora
        y = y + (scale * m_lin["lora_mul"]) * ((x @ a.T) @ b.T)
    return y


def rope(x, m, S):
    """x [B, S, H, hd]; rotation of pairs (i, i + hd/2) (NEOX) or (2i, 2i+1)."""
    hd = x.shape[-1]
    i = torch.arange(hd // 2, dtype=torch.float64)
    f = torch.pow(torch.tensor(m["theta"], dtype=torch.float64), -2.0 * i / hd)
    ang = torch.arange(S, dtype=torch.float64)[:, None] * m["freq_scale"] * f
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    if m["neox"]:
        x0, x1 = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], -1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1).flatten(-2)


def forward(m, ad, tokens):
    """Logits [B, S, V] of rows tokens [B, S] (int64)."""
    B, S = tokens.shape
    D, Hq, Hkv, eps = m["dim"], m["n_heads"], m["n_kv"], m["eps"]
    hd, V = D // Hq, m["emb"].shape[0]
    ok = (tokens >= 0) & (tokens < V)
    x = m["emb"][tokens.clamp(0, V - 1)] * ok[..., None]
    mask = torch.ones(S, S, dtype=torch.bool).tril()
    for l, L in enumerate(m["layers"]):
        def lin(name, inp, q):
            return bitlinear(inp, q, L[name], ad.get((l, name)))
        h = rmsnorm(x, L["attn_norm"], eps)
        hq = quantize_act(h)
        q = rope(lin("attn_q", h, hq).view(B, S, Hq, hd), m, S)
        k = rope(lin("attn_k", h, hq).view(B, S, Hkv, hd), m, S)
        v = lin("attn_v", h, hq).view(B, S, Hkv, hd)
        k = k.repeat_interleave(Hq // Hkv, dim=2)
        v = v.repeat_interleave(Hq // Hkv, dim=2)
        sc = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(hd)
        p = torch.softmax(sc.masked_fill(~mask, -math.inf), -1)
        a = torch.einsum("bhij,bjhd->bihd", p, v).reshape(B, S, D)
        if "attn_sub_norm" in L:
            a = rmsnorm(a, L["attn_sub_norm"], eps)
        x = x + lin("attn_output", a, quantize_act(a))
        h = rmsnorm(x, L["ffn_norm"], eps)
        hq = quantize_act(h)
        gt, up = lin("ffn_gate", h, hq), lin("ffn_up", h, hq)
        f = torch.relu(gt) ** 2 if m["act"] == "relu2" else torch.nn.functional.silu(gt)
        f = f * up
        if "ffn_sub_norm" in L:
            f = rmsnorm(f, L["ffn_sub_norm"], eps)
        x = x + lin("ffn_down", f, quantize_act(f))
    return rmsnorm(x, m["out_norm"], eps) @ m["head"].T


# ---- main --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="base model GGUF")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--adapter", help="qvac adapter GGUF")
    src.add_argument("--peft", help="PEFT directory (adapter_config.json, "
                     "adapter_model.safetensors)")
    ap.add_argument("--dump", required=True, help="DIR written by qvac eval --dump")
    ap.add_argument("--rows-per-batch", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    with open(os.path.join(args.dump, "meta.json")) as f:
        meta = json.load(f)
    if meta.get("act_quant", "bitnet") != "bitnet":
        raise SystemExit(f"{args.dump}: act_quant {meta['act_quant']!r}: only "
                         "'bitnet' (per-token int8) is reproduced here")
    rows, S = meta["rows"], meta["seq"]
    tok = np.fromfile(os.path.join(args.dump, "tokens.i32"), "<i4").reshape(rows, S)
    tgt = np.fromfile(os.path.join(args.dump, "targets.i32"), "<i4").reshape(rows, S)
    m = load_model(args.model)
    ad = (load_gguf_adapter(args.adapter) if args.adapter
          else load_peft(args.peft) if args.peft else {})
    V = m["emb"].shape[0]
    lpath = os.path.join(args.dump, "logits.f32")
    qlog = (np.memmap(lpath, "<f4", "r").reshape(rows, S, V)
            if os.path.exists(lpath) and os.path.getsize(lpath) == rows * S * V * 4
            else None)
    nll, count, max_dlogit = 0.0, 0, 0.0
    for r0 in range(0, rows, args.rows_per_batch):
        t = torch.from_numpy(tok[r0:r0 + args.rows_per_batch].astype(np.int64))
        y = torch.from_numpy(tgt[r0:r0 + args.rows_per_batch].astype(np.int64))
        z = forward(m, ad, t)
        if qlog is not None:
            ref = torch.from_numpy(np.array(qlog[r0:r0 + len(t)], np.float64))
            max_dlogit = max(max_dlogit, (z - ref).abs().max().item())
        scored = (y >= 0) & (y < V)
        lse = torch.logsumexp(z, -1)
        zy = z.gather(-1, y.clamp(0, V - 1)[..., None])[..., 0]
        nll += (lse - zy)[scored].sum().item()
        count += int(scored.sum())
    loss, qloss = nll / count, meta["loss"]
    rel = abs(loss - qloss) / abs(qloss)
    res = {"torch_loss": loss, "qvac_loss": qloss, "rel_diff": rel,
           "torch_perplexity": math.exp(loss), "tokens": count,
           "qvac_tokens": meta.get("tokens"), "arch": m["arch"],
           "adapter": len(ad), "pass": rel <= args.tol and count == meta.get("tokens", count)}
    if qlog is not None:
        res["max_abs_logit_diff"] = max_dlogit
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"torch loss {loss:.6f} (ppl {math.exp(loss):.4f}) vs qvac {qloss:.6f} "
              f"over {count} tokens: rel diff {rel:.2e} "
              f"({len(ad)} LoRA pairs, {m['arch']}) -> {'PASS' if res['pass'] else 'FAIL'}")
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
