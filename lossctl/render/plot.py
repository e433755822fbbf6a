"""`lossctl bench --plot FILE.png`: time, memory and % of roofline against size, Function vs
reference (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from lossctl.bench import BenchReport
from lossctl.errors import UsageError


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed", hint="pip install 'lossctl[plot]'"
        ) from None


def write_plot(report: BenchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem, ax_roof) = plt.subplots(1, 3, figsize=(15, 4.2))
    by_spec: dict[str, list] = {}
    for case in report.cases:
        if case.function_result is not None and not case.error:
            by_spec.setdefault(f"{case.spec} ({case.dtype})", []).append(case)
    for label, cases in by_spec.items():
        cases.sort(key=lambda c: c.elements)
        sizes = [c.elements for c in cases]
        for who, pick, style, key in (
            ("", lambda c: c.function_result, "-o", "function"),
            (" ref", lambda c: c.reference, "--s", "reference"),
        ):
            subjects = [pick(c) for c in cases]
            if not all(subjects):
                continue
            times = [(s.forward_backward or s.forward).median * 1e3 for s in subjects]
            ax_time.plot(sizes, times, style, label=f"{label}{who}")
            mems = [s.peak_bytes for s in subjects]
            if all(m is not None for m in mems):
                ax_mem.plot(sizes, [m / 2**20 for m in mems], style, label=f"{label}{who}")
            fractions = [_fraction(c.against(report.limits).get(key, {})) for c in cases]
            if all(f is not None for f in fractions):
                ax_roof.plot(sizes, [100 * f for f in fractions], style, label=f"{label}{who}")
    axes = (
        (ax_time, "forward+backward, ms (median)"),
        (ax_mem, "peak memory above inputs, MiB"),
        (ax_roof, "forward+backward, % of roofline"),
    )
    for ax, ylabel in axes:
        ax.set_xscale("log")
        if ax is not ax_roof:
            ax.set_yscale("log")
        ax.set_xlabel("elements in the inputs")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fp = report.fingerprint
    fig.suptitle(
        f"lossctl bench · {fp.device_name} · torch {fp.torch} · {fp.threads} thread{'s' * (fp.threads != 1)}",
        fontsize=10,
    )
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as error:
        raise UsageError(f"--plot: cannot write {path} ({error})") from None
    finally:
        plt.close(fig)


def _fraction(phases: dict) -> float | None:
    figures = phases.get("forward_backward") or phases.get("forward")
    return None if figures is None else figures.fraction
