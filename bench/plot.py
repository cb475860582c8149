"""plot.py RESULTS_JSON OUT_PNG: the scaling plots of bench/run.py (needs matplotlib)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SERVERS = (("py", "qpsmtpd-stdio", "tab:blue"), ("qp", "qpsmtpd 0.94", "tab:red"))


def series(table, keys_xs, field, scale=1.0):
    xs, ys, lo, hi = [], [], [], []
    for x, key in keys_xs:
        e = table.get(key) or {}
        s = e.get(field)
        if s:
            xs.append(x)
            ys.append(s["median"] * scale)
            # Whiskers: the interquartile range (the table gives min–max); on a busy machine a few slow runs
            # would otherwise hide the medians.
            lo.append((s["median"] - s.get("p25", s["min"])) * scale)
            hi.append((s.get("p75", s["max"]) - s["median"]) * scale)
    return xs, ys, [lo, hi]


def lines(ax, pick, field, scale=1.0):
    """One line per server; pick(server) gives (its rows, [(x, key)...])."""
    for s, label, color in SERVERS:
        xs, ys, err = series(*pick(s), field, scale)
        if xs:
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label, color=color)


def titled(ax, title, xlabel, ylabel):
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def main():
    res = json.load(open(sys.argv[1]))
    L, M = res.get("latency") or {}, res.get("messages") or {}
    D = (res.get("daemons") or {}).get("rows") or {}
    plugins = sorted({int(k[1:].split("-")[0]) for k in L if k.startswith("d")})
    rcpts = sorted({int(k.split("-")[1][1:]) for k in L if k.startswith("b-r") and not k.endswith("checkout")})
    fig, axes = plt.subplots(1, 4 if D else 3, figsize=(22 if D else 16, 4.8))
    base = (L.get("pass") or {}).get("wall_ms")

    ax = axes[0]
    lines(ax, lambda s: (L, [(n, f"d{n}-{s}") for n in plugins]), "wall_ms")
    if base:
        ax.axhline(base["median"], ls="--", color="gray", label="python3 -c pass")
        ax.axhline(2.5 * base["median"], ls=":", color="gray", label="2.5× python3 -c pass")
    titled(ax, "Session latency vs plugin count", "trivial plugins (+ rcpt_ok, queue/maildir)",
          "ms per session (median, IQR)")

    ax = axes[1]
    lines(ax, lambda s: (L, [(n, f"b-r{n}-{s}") for n in rcpts]), "wall_ms")
    if base:
        ax.axhline(base["median"], ls="--", color="gray", label="python3 -c pass")
    titled(ax, "Session latency vs recipients ((b) plugin set)", "recipients (RCPT TO) in the message", "ms per session")

    ax = axes[2]
    sizes = sorted(int(k) for k in M)
    lines(ax, lambda s: ({k: v.get(s) for k, v in M.items()}, [(n, str(n)) for n in sizes]), "rss_kb", 1 / 1024)
    if sizes:
        ax.set_xscale("log")
    titled(ax, "Peak RSS vs message size", "message size, MiB (log scale)", "peak RSS, MB")

    if D:
        ax = axes[3]
        sets = res["daemons"]["sets"]
        bars = [(key.split("|"), e["sessions_s"]) for key, e in D.items() if e.get("sessions_s")]
        bars = [(f"{name}, set {sets[cfg].split(' (')[-1].rstrip(')')}", s) for (cfg, name, conc), s in bars
                if conc == "16"]
        ys = range(len(bars))
        ax.barh(list(ys), [s["median"] for _, s in bars],
                xerr=[[s["median"] - s["min"] for _, s in bars], [s["max"] - s["median"] for _, s in bars]],
                color="tab:blue", capsize=3)
        ax.set_yticks(list(ys), [label for label, _ in bars], fontsize=7)
        ax.invert_yaxis()
        ax.set(title="Sessions/s by mode (smtp-source, 16 at once)", xlabel="sessions/s (median, min–max)")

    meta = res.get("meta", {})
    fig.suptitle(f"qpsmtpd-stdio benchmark — {meta.get('mode', '')} mode, {meta.get('date', '')}, git {meta.get('git', '')}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
