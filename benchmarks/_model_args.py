"""Shared command line of the benchmarks that read a model and a FaceForge split.

``--data DIR --checkpoint MODEL --split S --num N --threads T --json F``; each script adds its
own flags to the parser this returns.
"""

from __future__ import annotations

import argparse

import torch

from unif2ace.pipeline import FacePipeline


def model_data_parser(doc: str, num: int, threads: int = 1) -> argparse.ArgumentParser:
    """A parser with the shared flags; ``doc``'s first line is its description."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", required=True, help="FaceForge data set folder")
    ap.add_argument("--checkpoint", help="model folder (default: the bundled model)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--num", type=int, default=num, help="faces (the split's first N)")
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--json", help="also write the results to this file")
    return ap


def load_pipeline(args: argparse.Namespace) -> FacePipeline:
    """Set the thread count, then load ``--checkpoint`` (or the bundled model)."""
    torch.set_num_threads(args.threads)
    return FacePipeline.from_pretrained(args.checkpoint)
