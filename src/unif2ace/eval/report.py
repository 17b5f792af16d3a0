"""The human report of ``unif2ace eval``: ``REPORT.md`` with tables, charts and grids.

Files written into the report folder::

    REPORT.md                     headline table, per-split tables, links to everything below
    fidelity_<split>.png          per-attribute judge accuracy: generated vs real faces
    captions_<split>.png          per-attribute caption F1
    generated_<split>.png         prompts -> generated faces (first 16)
    described_<split>.png         test faces -> captions (first 8)
"""

from __future__ import annotations

import math
from pathlib import Path

from ..atomic import write_text_atomic

TARGETS = {  # TARGETS.md, quality of the bundled model
    "generation_fidelity": 0.90,
    "caption_attribute_f1": 0.90,
    "caption_attribute_f1_vs_labels": 0.90,
    "vqa_accuracy": 0.90,
}


def fmt_metric(x) -> str:
    """An evaluation number as REPORT.md and model cards write it: 3 decimals, FID-sized
    numbers (≥ 100) 1 decimal with thousands separators."""
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3f}"
    return str(x)


def with_interval(text: str, ci) -> str:
    """``text`` followed by its 95 % interval ``[lo, hi]`` when ``ci`` holds one."""
    if not ci or len(ci) != 2 or any(v is None or math.isnan(v) for v in ci):
        return text
    lo, hi = (fmt_metric(float(v)) for v in ci)  # as the point: 3 decimals, or 1 for KID-sized
    return f"{text} [{lo}, {hi}]"


def bar_chart(series: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    """Horizontal grouped bars: one group per attribute, one bar per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k for s in series.values() for k in s})
    h = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.2), dpi=100)
    for j, (label, vals) in enumerate(series.items()):
        ys = [i + j * h for i in range(len(names))]
        ax.barh(ys, [vals.get(n, math.nan) for n in names], height=h, label=label)
    ax.set_yticks([i + h * (len(series) - 1) / 2 for i in range(len(names))], names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(result: dict, out: str | Path, model_name: str) -> Path:
    """Write the report folder of an :func:`~unif2ace.eval.evaluate.evaluate_model` result."""
    from ..data.show import contact_sheet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m, media = result["metrics"], result["media"]
    lines = [f"# unif2ace evaluation: {model_name}", "", "## Headline", ""]
    splits = list(m["summary"])
    keys = list(next(iter(m["summary"].values())))
    lines += [
        "| metric | target | " + " | ".join(splits) + " |",
        "|---|---|" + "---|" * len(splits),
    ]
    ci = m.get("ci95") or {}
    for k in keys:
        tgt = f"≥ {TARGETS[k]:.2f}" if k in TARGETS else ""
        vals = ((fmt_metric(m["summary"][s][k]), ci.get(s, {}).get(k)) for s in splits)
        cells = (with_interval(v, c) for v, c in vals)
        lines.append(f"| {k} | {tgt} | {' | '.join(cells)} |")
    lines += [
        "",
        "Brackets: 95 % bootstrap intervals over the evaluated faces (how far a number moves "
        "with the choice of faces alone; not the spread between training runs).",
        "",
        "Generation fidelity: the attribute judge's accuracy on the attributes each prompt asks "
        "for, on the generated face; the *real ceiling* is the same judge on the record's real "
        "face. FID is measured in the judge's feature space; the floor is val-vs-split real "
        "faces at the same sample sizes.",
    ]
    for split in splits:
        lines += _split_section(m["splits"][split], media[split], split, out, contact_sheet)
    if "diversity" in m:
        d = m["diversity"]
        lines += [
            "",
            "## Diversity (judge features, cosine)",
            "",
            f"within prompt {fmt_metric(d.get('within_prompt'))}, across prompts "
            f"{fmt_metric(d.get('across_prompt'))} ({d.get('n_prompts')} prompts x "
            f"{d.get('n_samples', 0) // max(1, d.get('n_prompts', 1))} samples)",
        ]
    path = out / "REPORT.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _split_section(m: dict, media: dict, split: str, out: Path, contact_sheet) -> list[str]:
    g = m["generation"]
    lines = ["", f"## {split}", "", "### Generation", ""]
    lines += [
        f"- prompts: {g['n_prompts']} ({g['generate_s']} s); judged attribute pairs: "
        f"{g['fidelity']['n']}",
        f"- fidelity {fmt_metric(g['fidelity']['accuracy'])} (real faces: "
        f"{fmt_metric(g['fidelity_real']['accuracy'])}); "
        f"VQAScore {fmt_metric(g['vqa_score']['score'])}",
        f"- FID {fmt_metric(g['fid'])} (floor {fmt_metric(g['fid_floor_val'])}; "
        f"{g['fid_features']})",
    ]
    if "kid" in g:
        lines.append(f"- KID {fmt_metric(g['kid'])} (floor {fmt_metric(g['kid_floor_val'])}; "
                     "same features and real faces)")  # fmt: skip
    bar_chart(
        {"generated": g["fidelity"]["per_attribute"], "real": g["fidelity_real"]["per_attribute"]},
        out / f"fidelity_{split}.png",
        f"judge accuracy on prompted attributes ({split})",
    )
    gen = media["generation"]
    k = min(16, len(gen["images"]))
    sheet = contact_sheet(gen["images"][:k], gen["prompts"][:k], cols=min(8, k), cell=128)
    sheet.save(out / f"generated_{split}.png")
    lines += ["", f"![fidelity](fidelity_{split}.png)", "", f"![generated](generated_{split}.png)"]
    if "understanding" in m:
        u = m["understanding"]
        ca, cl, v = u["caption_attributes"], u["caption_attributes_vs_labels"], u["vqa"]
        lines += [
            "",
            "### Understanding",
            "",
            "| | precision | recall | F1 |",
            "|---|---|---|---|",
            f"| caption attributes vs reference caption | {fmt_metric(ca['precision'])} | "
            f"{fmt_metric(ca['recall'])} | {fmt_metric(ca['f1'])} |",
            f"| caption attributes vs all visible labels | {fmt_metric(cl['precision'])} | "
            f"{fmt_metric(cl['recall'])} | {fmt_metric(cl['f1'])} |",
            "",
            f"BLEU-4 {fmt_metric(u['bleu_4'])}, CIDEr-D {fmt_metric(u['cider_d'])}; VQA accuracy "
            f"{fmt_metric(v['accuracy'])} over {v['n']} questions"
            + (
                f" (blind baseline, the question alone: {fmt_metric(u['vqa_blind']['accuracy'])})"
                if "vqa_blind" in u
                else ""
            ),
            "",
            "| VQA by category | accuracy |",
            "|---|---|",
        ]
        lines += [f"| {c} | {fmt_metric(a)} |" for c, a in sorted(v["by_category"].items())]
        lines += [f"| kind: {c} | {fmt_metric(a)} |" for c, a in sorted(v["by_kind"].items())]
        if "llm_judge" in u:
            j = u["llm_judge"]
            lines += [
                "",
                f"LLM judge ({j['judge_model']}, 1–10 against the references, the paper's "
                f"protocol): Desc {fmt_metric(j['desc']['mean'])} over {j['desc']['n']} captions, "
                f"Conv {fmt_metric(j['conv']['mean'])} over {j['conv']['n']} answers "
                f"(unparsed replies: {j['desc']['unparsed'] + j['conv']['unparsed']})",
            ]
        per = {a: d.get("f1", math.nan) for a, d in ca["per_attribute"].items()}
        bar_chart({"F1": per}, out / f"captions_{split}.png", f"caption F1 per attribute ({split})")
        und = media["understanding"]
        k = min(8, len(und["faces"]))
        caps = [e["caption"] or "(empty)" for e in und["examples"][:k]]
        contact_sheet(und["faces"][:k], caps, cols=min(4, k), cell=192, text_lines=9).save(
            out / f"described_{split}.png"
        )
        lines += [
            "",
            f"![caption F1](captions_{split}.png)",
            "",
            f"![described](described_{split}.png)",
        ]
        lines += ["", "| face | question | answer | reference |", "|---|---|---|---|"]
        for e in und["examples"][:4]:
            for qa in e["qa"][:4]:
                lines.append(
                    f"| {e['id']} | {qa['question']} | {qa['answer']} | {qa['reference']} |"
                )
    return lines
