"""``unif2ace ablate loss|moe``: the paper's Tables 3 and 4 at CPU scale, with spread.

Every variant trains from the same run config (default ``configs/ablation.yaml``), on the same
data, for the same steps, once per seed; only the ablated setting differs. Each run is then
evaluated by ``unif2ace eval`` with the attribute judge, and the table reports mean ± sample
standard deviation over seeds::

    OUT/<variant>/seed-<s>/run/          training run (resumable)
    OUT/<variant>/seed-<s>/eval.json     its metrics
    OUT/ablation_<kind>.json / .md       the table (rewritten after every run)

Rerunning the same command resumes: finished runs are skipped, an interrupted one resumes
from its last checkpoint.

``--jobs N`` runs N (variant, seed) pairs at once, each in its own process with
``OMP_NUM_THREADS = --threads`` (default: cores // N) and its output in
``OUT/<variant>/seed-<s>/log.txt``. Small models use many threads poorly: on 2 cores two
one-thread runs finish more work per hour than one two-thread run.

``--reuse DIR`` (another ablation's OUT) takes a finished training run whose resolved config
equals this run's instead of training it again (copied, then evaluated with this table's
evaluation arguments): ``moe/both`` and ``loss/d3diff-a0.01`` are the same runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .atomic import write_text_atomic
from .errors import UserError

_NO_ENCODERS = ("init.semantic_encoder=", "init.face_encoder=")
# variant -> run-config overrides (paper Table 3: loss; Table 4: MoE levels)
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "loss": {
        "mask-only": ("loss.d3diff.mode=mask_only",),
        "score-only": ("loss.d3diff.mode=score_only",),
        "d3diff-a0.1": ("loss.d3diff.alpha=0.1",),
        "d3diff-a0.01": ("loss.d3diff.alpha=0.01",),
        "d3diff-a0.001": ("loss.d3diff.alpha=0.001",),
    },
    "moe": {  # without sequence-level experts a model has no encoders to start from
        "none": ("model.token_moe=false", "model.seq_moe=false", *_NO_ENCODERS),
        "token": ("model.token_moe=true", "model.seq_moe=false", *_NO_ENCODERS),
        "sequence": ("model.token_moe=false", "model.seq_moe=true"),
        "both": ("model.token_moe=true", "model.seq_moe=true"),
    },
}
# the paper's full model, which every other variant is compared with (Welch's t-test)
REFERENCE = {"loss": "d3diff-a0.01", "moe": "both"}
# (summary key, column title, higher is better)
COLUMNS = (
    ("generation_fidelity", "fidelity ↑", True),
    ("vqa_score", "VQAScore ↑", True),
    ("fid", "FID ↓", False),
    ("kid", "KID ↓", False),
    # held-out masked-code CE of real faces (90 % masked, own prompt) and how much the prompt
    # lowers it: they separate variants before their samples do (docs/evaluation.md)
    ("denoise_ce_nats", "denoise CE ↓", False),
    ("prompt_gap_nats", "prompt gap ↑", True),
    ("caption_attribute_f1", "caption F1 ↑", True),
    ("vqa_accuracy", "VQA acc ↑", True),
    ("cider_d", "CIDEr-D ↑", True),
)


def run_ablation(
    kind: str,
    out: str | Path,
    common: list[str],
    eval_args: list[str],
    seeds: int = 3,
    preset: str = "ablation",
    split: str = "test",
    only: list[str] | None = None,
    log=print,
    jobs: int = 1,
    threads: int | None = None,
    reuse: list[str | Path] | None = None,
) -> dict:
    """Train and evaluate every variant (or those in ``only``) x seed of ``kind``; returns
    the table (see the module docstring). ``jobs`` > 1: that many runs at once, each in a
    child process with ``threads`` intra-op threads."""
    if kind not in VARIANTS:
        raise UserError(f"unknown ablation {kind!r}; valid: {', '.join(VARIANTS)}")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    if jobs < 1 or (threads is not None and threads < 1):
        raise UserError("--jobs and --threads must be at least 1")
    unknown = sorted(set(only or ()) - set(VARIANTS[kind]))
    if unknown:
        raise UserError(f"unknown {kind} variants {unknown}; valid: {', '.join(VARIANTS[kind])}")
    missing = [str(r) for r in reuse or () if not Path(r).is_dir()]
    if missing:
        raise UserError(f"--reuse folder(s) {', '.join(missing)} do not exist")
    out = Path(out)
    todo = []
    for variant, overrides in VARIANTS[kind].items():
        if only and variant not in only:
            continue
        for seed in range(seeds):
            folder = out / variant / f"seed-{seed}"
            if (folder / "eval.json").is_file():
                continue
            train_argv = [
                "train", "model", "--preset", preset, "--out", str(folder / "run"),
                *common, *overrides, f"train.seed={seed}",
            ]  # fmt: skip
            eval_argv = [
                "eval", "--checkpoint", str(folder / "run"), "--splits", split,
                "--seed", str(seed), "--json", str(folder / "eval.json"), *eval_args,
            ]  # fmt: skip
            if reuse and not (folder / "run").exists():
                run_overrides = [*common, *overrides, f"train.seed={seed}"]
                _adopt_finished_run(preset, run_overrides, folder / "run", reuse, log)
            todo.append((variant, seed, folder, train_argv, eval_argv))
    lock = threading.Lock()

    def finished() -> None:
        with lock:
            write_table(kind, out, split)

    if jobs == 1:
        from .cli import main

        for variant, seed, _, train_argv, eval_argv in todo:
            log(f"[ablate] {variant} seed {seed}: training")
            _check(main(train_argv), variant)
            log(f"[ablate] {variant} seed {seed}: evaluating")
            _check(main(eval_argv), variant)
            finished()
    else:
        n_threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        env = {**os.environ, "OMP_NUM_THREADS": str(n_threads)}

        def run(job) -> None:
            variant, seed, folder, train_argv, eval_argv = job
            log(f"[ablate] {variant} seed {seed}: training + evaluating ({folder / 'log.txt'})")
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "log.txt", "a") as f:
                for argv in (train_argv, eval_argv):
                    cmd = [sys.executable, "-m", "unif2ace.cli", *argv]
                    rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
                    _check(rc.returncode, f"{variant} (see {folder / 'log.txt'})")
            finished()

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for fut in [pool.submit(run, job) for job in todo]:
                fut.result()
    return write_table(kind, out, split)


def _comparable(cfg: dict) -> dict:
    """A run config as ``--reuse`` compares it: trained parts named by their content (the same
    tokenizer or encoder sits at other paths in other checkouts), the data folder absolute,
    the vocabulary layout left out (a function of the tokenizers)."""
    from .bundled import TRAINING_PARTS, content_digest

    out = json.loads(json.dumps(cfg, default=str))
    out.pop("layout", None)
    for key in TRAINING_PARTS:  # the run-config keys of the tokenizers and encoders
        section, name = key.split(".")
        value = out.get(section, {}).get(name)
        if value and Path(value).exists():
            out[section][name] = "content:" + content_digest(value)
    if out.get("data", {}).get("data"):
        out["data"]["data"] = str(Path(out["data"]["data"]).resolve())
    return out


def _adopt_finished_run(preset: str, overrides: list[str], dest: Path, reuse, log) -> bool:
    """Copy into ``dest`` (atomically) a finished run under any ``reuse`` folder whose config
    equals the one ``preset`` + ``overrides`` resolve to (:func:`_comparable`); returns
    whether one was found."""
    import shutil

    from .config import to_dict
    from .train.checkpoint import checkpoint_step, find_latest, read_config
    from .train.unified import load_run_config

    try:
        want = load_run_config(preset, overrides)
    except UserError:
        return False  # the training call will say why
    cfg, steps = _comparable(to_dict(want)), want.train.steps
    for root in reuse:
        for run in sorted(Path(root).glob("*/seed-*/run")):
            try:  # the config the final checkpoint was trained with
                latest = find_latest(run)
                if latest is None or checkpoint_step(latest) != steps:
                    continue
                same = _comparable(read_config(latest)) == cfg
            except (UserError, OSError, ValueError, KeyError):
                continue  # unreadable: not a candidate
            if same:
                log(f"[ablate] reusing the finished run {run} (same config) for {dest.parent}")
                tmp = dest.with_name(dest.name + ".copying")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(run, tmp)
                tmp.rename(dest)
                return True
    log(f"[ablate] no finished run with the config of {dest.parent} under the --reuse folders")
    return False


def _check(rc: int, variant: str) -> None:
    if rc != 0:
        raise UserError(f"ablation variant {variant!r} failed (exit {rc}); rerun to resume")


def collect(kind: str, out: Path, split: str) -> dict[str, list[dict]]:
    """Per variant, the summary dicts of its finished seeds."""
    rows: dict[str, list[dict]] = {}
    for variant in VARIANTS[kind]:
        for path in sorted((out / variant).glob("seed-*/eval.json")):
            rows.setdefault(variant, []).append(json.loads(path.read_text())["summary"][split])
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for fewer than two values)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, math.nan
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def write_table(kind: str, out: Path, split: str) -> dict:
    """Write ``ablation_<kind>.json`` and ``.md`` from the finished runs; returns the table."""
    from .eval.metrics.stats import welch_test

    rows = collect(kind, out, split)
    table = {
        v: {
            "seeds": len(r),
            **{k: mean_std([x.get(k, math.nan) for x in r]) for k, _, _ in COLUMNS},
        }
        for v, r in rows.items()
    }
    ref = REFERENCE[kind]
    for v, r in rows.items():  # each variant against the full model, metric by metric
        if v != ref and ref in rows:
            table[v][f"vs_{ref}"] = {
                k: vars(welch_test(*([x.get(k, math.nan) for x in rr] for rr in (r, rows[ref]))))
                for k, _, _ in COLUMNS
            }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"ablation_{kind}.json", json.dumps(table, indent=2, default=str))
    lines = [
        f"| {kind} variant | seeds | " + " | ".join(t for _, t, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for v, t in table.items():
        cells = [_cell(*t[k]) for k, _, _ in COLUMNS]
        lines.append(f"| {v} | {t['seeds']} | " + " | ".join(cells) + " |")
    diffs = [(v, t[f"vs_{ref}"]) for v, t in table.items() if f"vs_{ref}" in t]
    if diffs:
        lines += [
            "",
            f"Difference from `{ref}` (variant − {ref}; Welch's t-test over seeds, two-sided p; "
            "**bold**: p < 0.05):",
            "",
            f"| {kind} variant | " + " | ".join(t for _, t, _ in COLUMNS) + " |",
            "|---|" + "---|" * len(COLUMNS),
        ]
        for v, d in diffs:
            lines.append(f"| {v} | " + " | ".join(_diff_cell(d[k]) for k, _, _ in COLUMNS) + " |")
    write_text_atomic(out / f"ablation_{kind}.md", "\n".join(lines) + "\n")
    return table


def _diff_cell(d: dict) -> str:
    if math.isnan(d["delta"]):
        return "—"
    if math.isnan(d["p"]):
        return f"{d['delta']:+.3f}"
    cell = f"{d['delta']:+.3f} (p {d['p']:.2f})"
    return f"**{cell}**" if d["p"] < 0.05 else cell


def _cell(m: float, s: float) -> str:
    if math.isnan(m):
        return "—"
    return f"{m:.3f}" if math.isnan(s) else f"{m:.3f} ± {s:.3f}"


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["top"].add_parser(
        "ablate",
        help="train and evaluate the paper's loss / MoE ablations over several seeds",
        description="Matched variants (same data, steps, seeds) of the D3Diff loss (mask-only, "
        "score-only, alpha 0.1/0.01/0.001) or of the MoE levels (none, token, sequence, both); "
        "each is evaluated with the judge and tabulated as mean ± std over seeds. Rerun to "
        "resume.",
    )
    p.add_argument("kind", choices=sorted(VARIANTS))
    p.add_argument("--data", required=True, help="pretokenised FaceForge data folder")
    p.add_argument("--tokenizer", help="image tokenizer folder")
    p.add_argument("--text-tokenizer", help="text tokenizer folder")
    p.add_argument("--judge", help="attribute judge folder")
    p.add_argument(
        "--bundled",
        action="store_true",
        help="take the image and text tokenizers, the judge and both encoders shipped with "
        "the package for those not given (the data must be pretokenised with the bundled "
        "tokenizer)",
    )
    p.add_argument("--out", required=True, help="folder of all runs and the tables")
    p.add_argument("--preset", default="ablation", help="run config (default: ablation)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--num", type=int, default=100, help="test records evaluated per run")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="run overrides")
    p.add_argument("--variants", nargs="*", help="run only these variants (default: all)")
    p.add_argument("--eval-args", default="", help="extra `unif2ace eval` arguments, quoted")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one process each")
    p.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="DIR",
        help="another ablation folder (repeatable) whose finished runs with the same resolved "
        "config are copied instead of trained again (moe/both = loss/d3diff-a0.01)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per run with --jobs (default: cores / jobs)",
    )
    p.set_defaults(func=_run)


def _parts(args: argparse.Namespace) -> dict[str, str]:
    """The parts every run shares; with ``--bundled`` the shipped ones fill the gaps (the
    encoders too, so the sequence-level experts read trained features, not random ones)."""
    parts = {
        "data.image_tokenizer": args.tokenizer,
        "data.text_tokenizer": args.text_tokenizer,
        "judge": args.judge,
    }
    if args.bundled:
        parts.update({"init.semantic_encoder": None, "init.face_encoder": None})
        parts = {k: v or "bundled" for k, v in parts.items()}
    missing = [k for k, v in parts.items() if not v]
    if missing:
        flags = ", ".join(
            "--" + k.split(".")[-1].replace("image_", "").replace("_", "-") for k in missing
        )
        raise UserError(f"ablate needs {flags} (or --bundled for the shipped parts)")
    return parts


def _run(args: argparse.Namespace) -> int:
    parts = _parts(args)
    judge = parts.pop("judge")
    common = [f"data.data={args.data}", *(f"{k}={v}" for k, v in parts.items()), *args.set]
    eval_args = [
        "--data",
        args.data,
        "--judge",
        judge,
        "--num",
        str(args.num),
        *args.eval_args.split(),
    ]
    table = run_ablation(
        args.kind,
        args.out,
        common,
        eval_args,
        args.seeds,
        args.preset,
        only=args.variants,
        jobs=args.jobs,
        threads=args.threads,
        reuse=args.reuse,
    )
    print(json.dumps(table, indent=2, default=str))
    return 0
