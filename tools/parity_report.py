#!/usr/bin/python3
"""Parity report: qvac's logits against llama.cpp's on the same tokens.

    /usr/bin/python3 tools/parity_report.py PLAN.json --md OUT.md --json OUT.json
                     [--boundary 1e-3] [--strict]

PLAN.json:
    {
      "command":   "the command line that made the dumps (printed in the header)",
      "llama_cpp": "llama.cpp commit the llama.cpp side was built from",
      "title":     "optional title",
      "notes":     "optional text or list of lines, printed under the header",
      "cases": [
        {"model": "label", "model_path": "...", "act_quant": "llamacpp" | "bitnet",
         "adapter": "label" | null,
         "qvac_dir": "DIR",            # qvac eval --dump DIR
         "llama_logits": "FILE.f32",   # tools/llamacpp_logits -o FILE.f32
         "llama_tokens": "FILE.i32",   # optional: checked equal to DIR/tokens.i32
         "continuations": [            # optional: greedy continuations
           {"prompt": "...", "qvac": "...", "llamacpp": "...", "qvac_bitnet": "..."}]}
      ],
      "peft": {"qvac_loss": x, "torch_loss": y, ...}   # optional
    }

Relative paths are taken from the current directory, or else from the plan's
folder. A dump DIR holds meta.json ({"rows":R,"seq":S,"vocab":V,...}),
tokens.i32 and targets.i32 (R x S int32 LE; target -1 = position not scored)
and logits.f32 (R x S x V float32 LE). The llama.cpp file is R x S x V float32
LE for the same tokens.

Per case, over the scored positions: top-1 agreement; per-position max
|dlogit| (max, median, and how many exceed --boundary: "boundary flips", an
activation on an int8 rounding boundary that rounds the other way); mean
|d log-softmax| over positions and the whole vocabulary; each side's
perplexity (exp of the mean NLL of the target, float64) and their relative
difference. For each case with an adapter and a case without one for the same
model and act_quant: each side's perplexity drop and the relative difference
of the drops.

Goals: act_quant llamacpp: median per-position max|dlogit| <= 1e-4 and top-1
>= 0.99; act_quant bitnet: perplexity within 1% of llama.cpp's; adapter: the
drops equal within 1%; PEFT: loss relative difference <= 1e-3.

Exit status: 0 when the report is written (with --strict: 2 when a goal is
missed), 1 on bad input.
"""

import argparse
import hashlib
import html
import json
import math
import os
import shlex
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    sys.stderr.write("parity_report: needs numpy (Debian: apt-get install python3-numpy)\n")
    sys.exit(1)

GOAL_MEDIAN_DLOGIT = 1e-4
GOAL_TOP1 = 0.99
GOAL_PPL_REL = 0.01
GOAL_ADAPTER_REL = 0.01
GOAL_PEFT_REL = 1e-3
CHUNK_ELEMS = 1 << 22  # float64 elements per side held at once


class InputError(Exception):
    pass


def resolve(path, plan_dir, what):
    if path is None:
        raise InputError("%s: no path given" % what)
    if os.path.isabs(path) or os.path.exists(path):
        return path
    alt = os.path.join(plan_dir, path)
    if os.path.exists(alt):
        return alt
    raise InputError("%s: %s not found (looked in the current directory and in %s)" % (what, path, plan_dir))


def load_i32(path, rows, seq, what):
    n = rows * seq
    size = os.path.getsize(path)
    if size != 4 * n:
        raise InputError("%s: %s has %d bytes, expected %d (%d x %d int32)" % (what, path, size, 4 * n, rows, seq))
    return np.fromfile(path, dtype="<i4").reshape(rows, seq)


def map_f32(path, rows, seq, vocab, what):
    n = rows * seq * vocab
    size = os.path.getsize(path)
    if size != 4 * n:
        hint = ""
        if size % (4 * rows * seq) == 0:
            hint = " (that is a vocabulary of %d)" % (size // (4 * rows * seq))
        raise InputError("%s: %s has %d bytes, expected %d (%d x %d x %d float32)%s"
                         % (what, path, size, 4 * n, rows, seq, vocab, hint))
    return np.memmap(path, dtype="<f4", mode="r", shape=(rows, seq, vocab))


def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


def fnum(x):
    """A float for JSON: NaN and infinities become null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def case_id(c):
    return "%s / %s / %s" % (c["model"], c["act_quant"], c["adapter"] if c["adapter"] else "base")


def analyse_case(case, plan_dir, boundary):
    for key in ("model", "act_quant", "qvac_dir", "llama_logits"):
        if key not in case:
            raise InputError("case %r: missing '%s'" % (case.get("model", "?"), key))
    if case["act_quant"] not in ("llamacpp", "bitnet"):
        raise InputError("case %r: act_quant must be 'llamacpp' or 'bitnet', not %r"
                         % (case["model"], case["act_quant"]))
    label = "case %s" % case_id({"model": case["model"], "act_quant": case["act_quant"],
                                 "adapter": case.get("adapter")})
    qdir = resolve(case["qvac_dir"], plan_dir, label + " qvac_dir")
    with open(os.path.join(qdir, "meta.json")) as f:
        meta = json.load(f)
    try:
        rows, seq, vocab = int(meta["rows"]), int(meta["seq"]), int(meta["vocab"])
    except (KeyError, TypeError, ValueError):
        raise InputError("%s: %s/meta.json lacks integer rows, seq, vocab" % (label, qdir))
    if rows <= 0 or seq <= 0 or vocab <= 0:
        raise InputError("%s: meta.json rows/seq/vocab must be positive" % label)
    tokens = load_i32(os.path.join(qdir, "tokens.i32"), rows, seq, label)
    targets = load_i32(os.path.join(qdir, "targets.i32"), rows, seq, label)
    Q = map_f32(os.path.join(qdir, "logits.f32"), rows, seq, vocab, label + " qvac")
    lpath = resolve(case["llama_logits"], plan_dir, label + " llama_logits")
    L = map_f32(lpath, rows, seq, vocab, label + " llama.cpp")
    if case.get("llama_tokens"):
        lt = load_i32(resolve(case["llama_tokens"], plan_dir, label + " llama_tokens"), rows, seq, label)
        if not np.array_equal(lt, tokens):
            raise InputError("%s: llama_tokens differ from %s/tokens.i32" % (label, qdir))
    bad = (targets < -1) | (targets >= vocab)
    if bad.any():
        r, s = np.argwhere(bad)[0]
        raise InputError("%s: target %d at row %d position %d is out of range" % (label, targets[r, s], r, s))
    scored = targets != -1
    npos = int(scored.sum())
    if npos == 0:
        raise InputError("%s: no scored positions (every target is -1)" % label)

    agree = 0
    maxabs = []
    sum_abs_dls = 0.0
    nll_q = 0.0
    nll_l = 0.0
    nonfinite_q = 0
    nonfinite_l = 0
    chunk = max(1, CHUNK_ELEMS // vocab)
    for r in range(rows):
        idx = np.nonzero(scored[r])[0]
        for c0 in range(0, len(idx), chunk):
            ii = idx[c0:c0 + chunk]
            q = np.asarray(Q[r, ii], dtype=np.float64)
            l = np.asarray(L[r, ii], dtype=np.float64)
            t = targets[r, ii]
            nonfinite_q += int((~np.isfinite(q)).sum())
            nonfinite_l += int((~np.isfinite(l)).sum())
            agree += int((q.argmax(axis=1) == l.argmax(axis=1)).sum())
            maxabs.append(np.abs(q - l).max(axis=1))
            lq = log_softmax(q)
            ll = log_softmax(l)
            sum_abs_dls += float(np.abs(lq - ll).sum())
            ar = np.arange(len(ii))
            nll_q -= float(lq[ar, t].sum())
            nll_l -= float(ll[ar, t].sum())
    maxabs = np.concatenate(maxabs)
    ppl_q = math.exp(nll_q / npos) if math.isfinite(nll_q) else float("nan")
    ppl_l = math.exp(nll_l / npos) if math.isfinite(nll_l) else float("nan")
    conts = []
    for c in case.get("continuations") or []:
        e = {"prompt": c.get("prompt", ""), "qvac": c.get("qvac"), "llamacpp": c.get("llamacpp")}
        if c.get("qvac_bitnet") is not None:
            e["qvac_bitnet"] = c["qvac_bitnet"]
        if c.get("llamacpp_fa") is not None:  # llama.cpp with flash attention (its default)
            e["llamacpp_fa"] = c["llamacpp_fa"]
            e["identical_fa"] = e["qvac"] is not None and e["qvac"] == c["llamacpp_fa"]
        e["identical"] = e["qvac"] is not None and e["qvac"] == e["llamacpp"]
        conts.append(e)
    data_hash = hashlib.sha256(tokens.tobytes() + targets.tobytes()).hexdigest()
    return {
        "id": case_id({"model": case["model"], "act_quant": case["act_quant"], "adapter": case.get("adapter")}),
        "model": case["model"],
        "model_path": case.get("model_path"),
        "act_quant": case["act_quant"],
        "adapter": case.get("adapter"),
        "rows": rows,
        "seq": seq,
        "vocab": vocab,
        "positions": npos,
        "top1_agreement": agree / npos,
        "top1_disagreements": npos - agree,
        "ppl_qvac": fnum(ppl_q),
        "ppl_llamacpp": fnum(ppl_l),
        "ppl_rel_diff": fnum((ppl_q - ppl_l) / ppl_l) if math.isfinite(ppl_l) and ppl_l else None,
        "max_abs_dlogit": fnum(np.nanmax(maxabs) if not np.isnan(maxabs).all() else float("nan")),
        "median_max_abs_dlogit": fnum(np.median(maxabs)),
        "boundary_threshold": boundary,
        "boundary_positions": int((maxabs > boundary).sum()),
        "mean_abs_dlogsoftmax": fnum(sum_abs_dls / (npos * vocab)),
        "nonfinite_qvac": nonfinite_q,
        "nonfinite_llamacpp": nonfinite_l,
        "data_sha256": data_hash,
        "qvac_dir": qdir,
        "llama_logits": lpath,
        "continuations": conts,
        "_nll_q": nll_q / npos,
        "_nll_l": nll_l / npos,
    }


def adapter_effects(cases):
    out = []
    for c in cases:
        if not c["adapter"]:
            continue
        bases = [b for b in cases if not b["adapter"] and b["model"] == c["model"] and b["act_quant"] == c["act_quant"]]
        if not bases:
            continue
        b = bases[0]
        e = {"model": c["model"], "act_quant": c["act_quant"], "adapter": c["adapter"],
             "same_data": b["data_sha256"] == c["data_sha256"],
             "ppl_base_qvac": b["ppl_qvac"], "ppl_adapter_qvac": c["ppl_qvac"],
             "ppl_base_llamacpp": b["ppl_llamacpp"], "ppl_adapter_llamacpp": c["ppl_llamacpp"],
             "drop_qvac": None, "drop_llamacpp": None, "rel_drop_qvac": None, "rel_drop_llamacpp": None,
             "drop_rel_diff": None}
        if None not in (b["ppl_qvac"], c["ppl_qvac"], b["ppl_llamacpp"], c["ppl_llamacpp"]):
            dq = b["ppl_qvac"] - c["ppl_qvac"]
            dl = b["ppl_llamacpp"] - c["ppl_llamacpp"]
            e["drop_qvac"] = dq
            e["drop_llamacpp"] = dl
            e["rel_drop_qvac"] = dq / b["ppl_qvac"]
            e["rel_drop_llamacpp"] = dl / b["ppl_llamacpp"]
            e["drop_rel_diff"] = abs(dq - dl) / abs(dl) if dl != 0 else (0.0 if dq == dl else None)
        out.append(e)
    return out


def goal(name, case, metric, value, op, limit, note=None):
    if value is None:
        ok, margin = False, None
    elif op == "<=":
        ok, margin = value <= limit, limit - value
    else:
        ok, margin = value >= limit, value - limit
    g = {"goal": name, "case": case, "metric": metric, "value": value, "op": op, "limit": limit,
         "pass": bool(ok), "margin": margin}
    if note:
        g["note"] = note
    return g


def evaluate_goals(cases, effects, peft):
    items = []
    for c in cases:
        if c["act_quant"] == "llamacpp":
            items.append(goal("llamacpp-mode logits", c["id"], "median per-position max|dlogit|",
                              c["median_max_abs_dlogit"], "<=", GOAL_MEDIAN_DLOGIT))
            items.append(goal("llamacpp-mode top-1", c["id"], "top-1 agreement",
                              c["top1_agreement"], ">=", GOAL_TOP1))
        else:
            v = abs(c["ppl_rel_diff"]) if c["ppl_rel_diff"] is not None else None
            items.append(goal("bitnet-mode perplexity", c["id"], "|ppl_qvac/ppl_llamacpp - 1|",
                              v, "<=", GOAL_PPL_REL))
    for e in effects:
        cid = "%s / %s / %s vs base" % (e["model"], e["act_quant"], e["adapter"])
        note = None if e["same_data"] else "base and adapter cases were evaluated on different tokens/targets"
        items.append(goal("adapter effect", cid, "|drop_qvac - drop_llamacpp| / |drop_llamacpp|",
                          e["drop_rel_diff"] if e["same_data"] else None, "<=", GOAL_ADAPTER_REL, note))
    if peft is not None:
        items.append(goal("PEFT/PyTorch loss", "peft", "|qvac_loss - torch_loss| / |torch_loss|",
                          peft.get("rel_diff"), "<=", GOAL_PEFT_REL))
    return {"all_pass": all(g["pass"] for g in items), "items": items}


def peft_section(p):
    if p is None:
        return None
    if not isinstance(p, dict) or "qvac_loss" not in p or "torch_loss" not in p:
        raise InputError("peft: needs qvac_loss and torch_loss")
    out = dict(p)
    q, t = float(p["qvac_loss"]), float(p["torch_loss"])
    out["rel_diff"] = abs(q - t) / abs(t) if t != 0 else (0.0 if q == t else None)
    return out


# ---------------------------------------------------------------- markdown

def fmt(x, kind="g"):
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if kind == "pct":
        return "%.3f%%" % (100.0 * x)
    if kind == "pctg":
        return "%.3g%%" % (100.0 * x)
    if kind == "fix":
        return "%.4f" % x
    if x == 0:
        return "0"
    return "%.3g" % x


def cell(s):
    """Text that stays inside one table cell."""
    if s is None:
        return "—"
    s = html.escape(str(s), quote=False)
    s = s.replace("|", "\\|").replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")
    s = s.replace("`", "&#96;")
    return s if s.strip() else "&nbsp;"


def code(s):
    return "`" + str(s).replace("`", "'") + "`"


def margin_text(g):
    if g["value"] is None:
        return g.get("note", "no value")
    v, lim = g["value"], g["limit"]
    if g["op"] == "<=":
        if g["pass"]:
            return "%.3gx under the limit" % (lim / v) if v > 0 else "exact (0)"
        return "%.3gx the limit (over by %.3g)" % (v / lim, v - lim)
    if g["pass"]:
        return "above by %.3g" % (v - lim)
    return "below by %.3g" % (lim - v)


def markdown(report, plan):
    L = []
    L.append("# %s" % (plan.get("title") or "qvac vs llama.cpp: logit parity"))
    L.append("")
    L.append("Compared: qvac's logits (`qvac eval --dump`) with llama.cpp's (commit %s; "
             "`tools/llamacpp_logits`: CPU, f32 K/V cache, no flash attention, each row one sequence "
             "from position 0) on the same tokens, at every scored position (target != -1)."
             % code(report["llama_cpp"] or "unknown"))
    L.append("")
    if plan.get("command"):
        L.append("Dumps made by: %s" % code(plan["command"]))
        L.append("")
    L.append("Report made by: %s" % code(report["generated_by"]))
    L.append("")
    notes = plan.get("notes")
    if notes:
        for n in ([notes] if isinstance(notes, str) else notes):
            L.append("> %s" % cell(n))
        L.append("")

    L.append("## Summary")
    L.append("")
    L.append("| model | act_quant | adapter | positions | top-1 | median max\\|Δlogit\\| | max \\|Δlogit\\| "
             "| boundary flips | mean \\|Δ log-softmax\\| | PPL qvac | PPL llama.cpp | ΔPPL |")
    L.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in report["cases"]:
        L.append("| %s | %s | %s | %d | %s | %s | %s | %d | %s | %s | %s | %s |" % (
            cell(c["model"]), c["act_quant"], cell(c["adapter"] or "—"), c["positions"],
            fmt(c["top1_agreement"], "pct"), fmt(c["median_max_abs_dlogit"]), fmt(c["max_abs_dlogit"]),
            c["boundary_positions"], fmt(c["mean_abs_dlogsoftmax"]), fmt(c["ppl_qvac"], "fix"),
            fmt(c["ppl_llamacpp"], "fix"), fmt(c["ppl_rel_diff"], "pctg")))
    L.append("")

    L.append("## Goals")
    L.append("")
    L.append("| goal | case | metric | value | limit | result | by how much |")
    L.append("| --- | --- | --- | ---: | ---: | --- | --- |")
    for g in report["goals"]["items"]:
        L.append("| %s | %s | %s | %s | %s %s | **%s** | %s |" % (
            g["goal"], cell(g["case"]), cell(g["metric"]), fmt(g["value"]), "≤" if g["op"] == "<=" else "≥",
            fmt(g["limit"]),
            "pass" if g["pass"] else "MISS", cell(margin_text(g))))
    L.append("")
    L.append("All goals met: **%s**" % ("yes" if report["goals"]["all_pass"] else "no"))
    L.append("")

    if report["adapter_effect"]:
        L.append("## Adapter effect")
        L.append("")
        L.append("| model | act_quant | adapter | PPL base → adapter (qvac) | drop qvac "
                 "| PPL base → adapter (llama.cpp) | drop llama.cpp | drops differ by | same data |")
        L.append("| --- | --- | --- | --- | ---: | --- | ---: | ---: | --- |")
        for e in report["adapter_effect"]:
            L.append("| %s | %s | %s | %s → %s | %s (%s) | %s → %s | %s (%s) | %s | %s |" % (
                cell(e["model"]), e["act_quant"], cell(e["adapter"]),
                fmt(e["ppl_base_qvac"], "fix"), fmt(e["ppl_adapter_qvac"], "fix"),
                fmt(e["drop_qvac"], "fix"), fmt(e["rel_drop_qvac"], "pct"),
                fmt(e["ppl_base_llamacpp"], "fix"), fmt(e["ppl_adapter_llamacpp"], "fix"),
                fmt(e["drop_llamacpp"], "fix"), fmt(e["rel_drop_llamacpp"], "pct"),
                fmt(e["drop_rel_diff"], "pctg"), fmt(e["same_data"])))
        L.append("")

    if report.get("peft"):
        p = report["peft"]
        L.append("## PEFT / PyTorch")
        L.append("")
        L.append("| comparison | qvac loss | PyTorch loss | relative difference | goal | result |")
        L.append("| --- | ---: | ---: | ---: | ---: | --- |")
        ok = p["rel_diff"] is not None and p["rel_diff"] <= GOAL_PEFT_REL
        L.append("| PEFT/PyTorch | %.6g | %.6g | %s | ≤ %g | **%s** |" % (
            float(p["qvac_loss"]), float(p["torch_loss"]), fmt(p["rel_diff"]), GOAL_PEFT_REL,
            "pass" if ok else "MISS"))
        extra = [k for k in p if k not in ("qvac_loss", "torch_loss", "rel_diff")]
        if extra:
            L.append("")
            for k in extra:
                v = p[k]
                L.append("- %s: %s" % (cell(k), cell(v if isinstance(v, str) else json.dumps(v))))
        L.append("")

    L.append("## Cases")
    for c in report["cases"]:
        L.append("")
        L.append("### %s" % cell(c["id"]))
        L.append("")
        L.append("| metric | value |")
        L.append("| --- | ---: |")
        rows = [
            ("model file", cell(c["model_path"] or "—")),
            ("rows × seq × vocab", "%d × %d × %d" % (c["rows"], c["seq"], c["vocab"])),
            ("scored positions", str(c["positions"])),
            ("top-1 agreement", "%s (%d disagree)" % (fmt(c["top1_agreement"], "pct"), c["top1_disagreements"])),
            ("max \\|Δlogit\\| (all positions)", fmt(c["max_abs_dlogit"])),
            ("median of per-position max \\|Δlogit\\|", fmt(c["median_max_abs_dlogit"])),
            ("positions with max \\|Δlogit\\| > %g (boundary flips)" % c["boundary_threshold"],
             str(c["boundary_positions"])),
            ("mean \\|Δ log-softmax\\|", fmt(c["mean_abs_dlogsoftmax"])),
            ("perplexity qvac", fmt(c["ppl_qvac"], "fix")),
            ("perplexity llama.cpp", fmt(c["ppl_llamacpp"], "fix")),
            ("ΔPPL (qvac / llama.cpp − 1)", fmt(c["ppl_rel_diff"], "pctg")),
        ]
        if c["nonfinite_qvac"] or c["nonfinite_llamacpp"]:
            rows.append(("non-finite logits qvac / llama.cpp",
                         "%d / %d" % (c["nonfinite_qvac"], c["nonfinite_llamacpp"])))
        for k, v in rows:
            L.append("| %s | %s |" % (k, v))
        if c["continuations"]:
            has_b = any("qvac_bitnet" in e for e in c["continuations"])
            has_fa = any("llamacpp_fa" in e for e in c["continuations"])
            L.append("")
            L.append("Greedy continuations (qvac with this case's act-quant; llama.cpp with "
                     "flash attention off" + (", and with its default (on)" if has_fa else "") + "):")
            L.append("")
            hdr = ("| prompt | qvac | llama.cpp |" + (" qvac (bitnet) |" if has_b else "") +
                   " identical |" + (" llama.cpp, flash attention on | identical |" if has_fa else ""))
            L.append(hdr)
            L.append("| --- | --- | --- |" + (" --- |" if has_b else "") + " --- |" +
                     (" --- | --- |" if has_fa else ""))
            for e in c["continuations"]:
                line = "| %s | %s | %s |" % (cell(e["prompt"]), cell(e["qvac"]), cell(e["llamacpp"]))
                if has_b:
                    line += " %s |" % cell(e.get("qvac_bitnet"))
                line += " %s |" % ("yes" if e["identical"] else "**no**")
                if has_fa:
                    line += " %s | %s |" % (cell(e.get("llamacpp_fa")),
                                            "yes" if e.get("identical_fa") else "**no**")
                L.append(line)
    L.append("")
    return "\n".join(L)


def main(argv):
    ap = argparse.ArgumentParser(description="qvac vs llama.cpp logit parity report",
                                 epilog="See the top of this file for the plan format.")
    ap.add_argument("plan", help="plan JSON file")
    ap.add_argument("--md", help="write the Markdown report here")
    ap.add_argument("--json", dest="json_out", help="write the JSON report here")
    ap.add_argument("--boundary", type=float, default=1e-3,
                    help="per-position max|dlogit| above which a position counts as a boundary flip (1e-3)")
    ap.add_argument("--strict", action="store_true", help="exit 2 when a goal is missed")
    a = ap.parse_args(argv[1:])
    if not a.md and not a.json_out:
        ap.error("give --md and/or --json")

    try:
        with open(a.plan) as f:
            plan = json.load(f)
        if not isinstance(plan, dict) or not isinstance(plan.get("cases"), list) or not plan["cases"]:
            raise InputError("%s: needs a non-empty 'cases' list" % a.plan)
        plan_dir = os.path.dirname(os.path.abspath(a.plan))
        cases = [analyse_case(c, plan_dir, a.boundary) for c in plan["cases"]]
        peft = peft_section(plan.get("peft"))
    except (InputError, OSError, ValueError) as e:
        sys.stderr.write("parity_report: %s\n" % e)
        return 1

    effects = adapter_effects(cases)
    goals = evaluate_goals(cases, effects, peft)
    for c in cases:
        c.pop("_nll_q")
        c.pop("_nll_l")
    report = {
        "generated_by": "python3 " + " ".join(shlex.quote(x) for x in argv),
        "llama_cpp": plan.get("llama_cpp"),
        "command": plan.get("command"),
        "cases": cases,
        "adapter_effect": effects,
        "goals": goals,
    }
    if peft is not None:
        report["peft"] = peft

    def write(path, text):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    try:
        if a.json_out:
            write(a.json_out, json.dumps(report, indent=2, allow_nan=False) + "\n")
        if a.md:
            write(a.md, markdown(report, plan))
    except OSError as e:
        sys.stderr.write("parity_report: %s\n" % e)
        return 1

    for g in goals["items"]:
        sys.stdout.write("%-5s %-24s %-40s %s %s %s\n" % ("pass" if g["pass"] else "MISS", g["goal"], g["case"],
                                                         fmt(g["value"]), g["op"], fmt(g["limit"])))
    if a.strict and not goals["all_pass"]:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
