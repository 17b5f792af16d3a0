"""Measurement helpers of ``unif2ace bench``: timing, per-section peak memory, the machine
description and the matmul roofline. Plain functions, no model code."""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable

# glibc malloc settings that keep freed activation buffers mapped between steps (measured:
# 50x fewer page faults in training). They only act if set before the process starts, so the
# command re-runs itself in a child process with them unless they are already set.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "536870912",
}


def timed(fn: Callable[[], object], warmup: int, repeats: int) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; median/min seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": len(times)}


class PeakRSS:
    """Peak resident memory of a section: resets the kernel's high-water mark on entry
    (``/proc/self/clear_refs`` = 5, Linux >= 4.0), reads ``getrusage`` ru_maxrss on exit.
    Free heap memory is handed back first (``malloc_trim``), so memory an earlier section
    freed is not counted. Where the reset is not allowed the figure is the process-wide peak
    so far (``reset`` False)."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _malloc_trim()  # freed heap of earlier sections stays resident under MALLOC_ENV
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.start_mb = _current_rss_mb()
        return self

    def __exit__(self, *exc) -> None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.mb = round(kb / 1024, 1)

    def record(self) -> dict:
        return {
            "peak_rss_mb": self.mb,
            "rss_start_mb": self.start_mb,
            "peak_rss_section_only": self.reset,
        }


def _current_rss_mb() -> float | None:
    """Resident memory now (VmRSS), None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            kb = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS"))
        return round(kb / 1024, 1)
    except (OSError, StopIteration):
        return None


def _malloc_trim() -> None:
    """Return free heap pages to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_info(wanted=("amx_bf16", "avx512_bf16", "avx512f", "avx2")) -> tuple[str, list[str]]:
    """(CPU model name, the ``wanted`` flags it has) from /proc/cpuinfo."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = info.get("flags", "").split()
    model = info.get("model name") or platform.processor() or "unknown"
    return model, [w for w in wanted if w in flags]


def environment() -> dict:
    """Versions, CPU, threads, allocator settings and the load average now."""
    import torch

    from . import __version__

    model, flags = cpu_info()
    return {
        "unif2ace": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


def matmul_peak(sizes: tuple[int, ...], repeats: int, work: float) -> dict:
    """Best square-matmul TFLOP/s (2 n^3 FLOPs each) per dtype and size, torch.mm with out=."""
    import torch

    out: dict = {"sizes": list(sizes), "repeats": repeats, "by_size": {}}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        g = torch.Generator().manual_seed(0)
        best: dict[str, float] = {}
        for n in sizes:
            a = torch.randn(n, n, generator=g).to(dtype)
            b = torch.randn(n, n, generator=g).to(dtype)
            c = torch.empty(n, n, dtype=dtype)
            inner = max(1, round(work / (2.0 * n**3)))

            def run(a=a, b=b, c=c, inner=inner):
                for _ in range(inner):
                    torch.mm(a, b, out=c)

            t = timed(run, warmup=1, repeats=repeats)
            best[str(n)] = round(inner * 2.0 * n**3 / t["min_s"] / 1e12, 4)
        out["by_size"][name] = best
        out[f"{name}_tflops"] = max(best.values())
    out["threads"] = torch.get_num_threads()
    return out
