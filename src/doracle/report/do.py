"""The DO story every game's report tells (:mod:`doracle.report.at`, :mod:`doracle.report.gan`): the
payoff heatmap with its standard errors, the meta-strategies, the DO gap with its upper bound, the
game value and support sizes, the per-iteration and pruning tables, meta-strategy stability, the
architecture-search section, the plots' data for DVC, and the page and table helpers they share."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import yaml

from doracle.artifacts import (
    atomic_write_bytes,
    read_json,
    sidecar,
    timing_of,
    write_json,
)
from doracle.report.html import Page, artifact_links, inline, markdown_blocks


def savefig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_heatmap(payoff: dict, path: Path, *, players=("defender", "attacker"), value="accuracy",
                 vrange=(0.0, 1.0)) -> None:
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    a = np.asarray(payoff["payoff"])
    se = np.asarray(payoff["stderr"]) if payoff.get("stderr") is not None else None
    lo, hi = vrange if vrange is not None else (float(a.min()), float(a.max()))
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * a.shape[1], 1.0 + 0.5 * a.shape[0]))
    im = ax.imshow(a, cmap="viridis", vmin=lo, vmax=hi)
    ax.set_xticks(range(a.shape[1]), payoff["col_ids"], rotation=45)
    ax.set_yticks(range(a.shape[0]), payoff["row_ids"])
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            ax.text(j, i, f"{a[i, j]:.2f}" + (f"\n±{se[i, j]:.2f}" if se is not None else ""), ha="center",
                    va="center", fontsize=6 if se is not None else 7,
                    color="white" if a[i, j] < lo + 0.6 * (hi - lo) else "black")
    ax.set_xlabel(f"{players[1]} strategy")
    ax.set_ylabel(f"{players[0]} strategy")
    ax.set_title(f"payoff ({value}" + (" ± standard error" if se is not None else "") +
                 f"), iteration {payoff['iteration']}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    savefig(fig, path)
    plt.close(fig)


def plot_meta(history: list[dict], path: Path, *, players=("defender", "attacker")) -> None:
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    its = [h["iteration"] for h in history]
    for ax, key, title in ((axes[0], "sigma_row", f"{players[0]} meta-strategy"),
                           (axes[1], "sigma_col", f"{players[1]} meta-strategy")):
        ids = sorted({i for h in history for i in h[key]})
        probs = np.array([[h[key].get(i, 0.0) for h in history] for i in ids])
        ax.stackplot(its, probs, labels=ids)
        ax.set_title(title)
        ax.set_xlabel("DO iteration")
        ax.set_xticks(its)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[0].set_ylabel("probability")
    savefig(fig, path)
    plt.close(fig)


def plot_gap(history: list[dict], tolerance: float, path: Path, *, players=("defender", "attacker")) -> None:
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    its = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(its, [h["gap"] for h in history], marker="o", label="DO gap")
    if all("gap_upper" in h for h in history):  # the payoffs are estimates: the gap's 95% upper bound
        ax.fill_between(its, [h["gap"] for h in history], [h["gap_upper"] for h in history], alpha=0.2,
                        label="up to the gap's 95% upper bound")
    ax.plot(its, [h["row_gain"] for h in history], ls="--", marker=".", label=f"{players[0]} gain")
    ax.plot(its, [h["col_gain"] for h in history], ls="--", marker=".", label=f"{players[1]} gain")
    if tolerance > 0:
        ax.axhline(tolerance, color="grey", lw=0.8, label=f"tolerance {tolerance:g}")
    # symlog: gains can be zero or negative (an approximate oracle that did not improve)
    ax.set_yscale("symlog", linthresh=max(tolerance, 1e-3) / 2)
    ax.set_xlabel("DO iteration")
    ax.set_ylabel("gain over previous meta-strategy")
    ax.set_xticks(its)
    ax.legend(fontsize=8)
    savefig(fig, path)
    plt.close(fig)


def plot_value_support(history: list[dict], path: Path, *, players=("defender", "attacker")) -> None:
    """The restricted game's value per iteration, and the support and population sizes."""
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    its = [h["iteration"] for h in history]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax.plot(its, [h["value"] for h in history], marker="o", color="tab:purple")
    ax.set_title("game value (restricted game, payoff split)", fontsize=9)
    ax.set_xlabel("DO iteration")
    ax.set_xticks(its)
    for k, key, p in ((0, "row", players[0]), (1, "col", players[1])):
        color = f"C{k}"
        bx.plot(its, [h[f"support_{key}"] for h in history], marker="o", color=color, label=f"{p} support")
        bx.plot(its, [h[f"population_{key}"] for h in history], ls=":", color=color, label=f"{p} population")
    bx.set_title("support and population sizes", fontsize=9)
    bx.set_xlabel("DO iteration")
    bx.set_xticks(its)
    bx.legend(fontsize=7)
    savefig(fig, path)
    plt.close(fig)


def fmt_count(n) -> str:
    """240 | 31.2k | 1.25M: a pass count that stays readable from tiny runs to clusters."""
    if n is None:
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def wall_seconds(metrics: dict, model: str) -> float | None:
    """The wall seconds of every job that produced ``model``, None when unknown (files written
    before the jobs recorded it). The reports' one reader of timings (kept out of headline.json)."""
    return timing_of(metrics, "models", model, "compute", "wall_seconds")


def fmt_wall(metrics: dict, model: str) -> str:
    w = wall_seconds(metrics, model)
    return "–" if w is None else f"{w:.1f}"


def fmt_pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def closed_payoff(pay: dict, pop: dict) -> dict:
    """The payoff matrix the deployed meta-strategy was solved on: the closed population's (the last
    iteration's survivors and the closing best response's row or column), else the last payoff file's."""
    st = pop["state"]
    if not st.get("closing"):
        return pay
    return {"payoff": st["payoff"], "stderr": pop.get("payoff_stderr"), "row_ids": st["row_ids"],
            "col_ids": st["col_ids"], "iteration": f"{pay['iteration']} + the closing {st['closing']['id']}"}


def do_plots(pay: dict, history: list[dict], tolerance: float, d: Path, players=("defender", "attacker"),
             value: str = "accuracy", vrange=(0.0, 1.0)) -> None:
    """The DO story of any game: payoff heatmap (``pay``: :func:`closed_payoff`), meta-strategy
    evolution, DO gap."""
    plot_heatmap(pay, d / "payoff_heatmap.png", players=players, value=value, vrange=vrange)
    plot_meta(history, d / "meta_strategy.png", players=players)
    plot_gap(history, tolerance, d / "do_gap.png", players=players)
    plot_value_support(history, d / "do_value.png", players=players)


def do_section(do: dict, history: list[dict], players=("defender", "attacker")) -> tuple[list[str], list[str]]:
    """The report's double-oracle lines shared by the games: (status and value lines; the plots and
    the per-iteration table)."""
    row, col = players
    lines = [
        f"- iterations run: {do['iterations_run']}, status: **{do.get('status', 'not_converged')}** "
        f"(final gap {do['final_gap']:.4g} ± {do.get('final_gap_stderr') or 0:.3g}, 95% upper bound "
        f"{do.get('final_gap_upper') or do['final_gap']:.4g}, tolerance {do['tolerance']:g}; `converged` needs "
        "the upper bound within the tolerance, `within_noise` means only the estimate is)",
        f"- game value (payoff split): {do['value']:.4f}",
    ]
    c = do.get("closing")
    if c and do.get("exploitability") is not None:
        lines.append(
            f"- exploitability of the deployed {c['deployed']} mixture: **{do['exploitability']:.4f} ± "
            f"{do['exploitability_stderr']:.4f}** (the closing best response {c['id']}, a {c['player_name']} trained "
            f"against the final meta-strategy, gains that much over the game value {c['value_before']:.4f}; it joined "
            f"the matrix and the meta-game was solved once more: value {c['value']:.4f}, the deployed mixture is that "
            "solve's)")
    table = [
        "",
        "![payoff heatmap](payoff_heatmap.png)",
        "",
        "![meta-strategy evolution](meta_strategy.png)",
        "",
        "![DO gap](do_gap.png)",
        "",
        "![game value, support and population sizes](do_value.png)",
        "",
        f"| it | value | gap ± se | upper bound | status | {row} gain | {col} gain | support | population "
        "| pruned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for h in history:
        pruned = ", ".join(f"{p['id']}" for p in h["pruned"] if p["id"]) or "–"
        table.append(f"| {h['iteration']} | {h['value']:.4f} | {h['gap']:.4f} ± {h.get('gap_stderr', 0):.3f} | "
                     f"{h.get('gap_upper', h['gap']):.4f} | {h.get('status', '–')} | {h['row_gain']:.4f} | "
                     f"{h['col_gain']:.4f} | {h['support_row']}×{h['support_col']} | "
                     f"{h['population_row']}×{h['population_col']} | {pruned} |")
    return lines, table


def _arch_text(arch: str, options: dict | None) -> str:
    return arch + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")


def member_architecture(meta: dict, player: str) -> str:
    """A strategy's architecture from its sidecar: a classifier's ``arch`` (+ ``arch_options``), a
    GAN network's ``nets[player]``; "–" for strategies that are no network (AT attackers)."""
    if "nets" in meta:
        spec = meta["nets"].get(player) or {}
        return _arch_text(spec.get("arch", "–"), spec.get("options"))
    return _arch_text(meta["arch"], meta.get("arch_options")) if "arch" in meta else "–"


def architecture_section(pop: dict) -> list[str]:
    """"Architecture search" (DONAS): per iteration and searching player, every candidate's
    short-run score and the chosen one, then each current member's architecture. Empty when no
    best response searched. Reads the sidecars of the strategies the population records."""

    metas = {sid: read_json(sidecar(ref["path"])) for sid, ref in pop["all_strategies"].items()
             if sidecar(ref["path"]).is_file()}
    def record(sid):  # a co-trained pair's file holds one search record per player that searched
        nas, player = metas[sid].get("nas"), pop["all_strategies"][sid]["player"]
        return nas if nas is None or "candidates" in nas else nas.get(player)

    searched = sorted((m.get("iteration", 0), pop["all_strategies"][sid]["player"], sid) for sid, m in metas.items()
                      if record(sid) is not None)
    if not searched:
        return []
    lines = ["", "## Architecture search", "",
             "Each searching best response trained its candidates for a short budget against the opponent mixture "
             "and kept the one with the best payoff against that mixture (payoff split), then trained it fully. "
             "Scores: the payoff against the opponent mixture (the player's side: higher is better for the row "
             "player, lower for the column player).", "",
             "| it | player | strategy | candidate | architecture | short epochs | score | chosen |",
             "|---|---|---|---|---|---|---|---|"]
    for it, player, sid in searched:
        nas = record(sid)
        for k, c in enumerate(nas["candidates"]):
            lines.append(f"| {it} | {player} | {sid} | {k} | {_arch_text(c['arch'], c['options'])} | {c['epochs']} | "
                         f"{c['score']:.4f} | {'**yes**' if k == nas['chosen'] else ''} |")
    state = pop["state"]
    lines += ["", "Trainings per searching best response: the candidates' short ones + 1 full. Current members:", "",
              "| member | player | architecture | probability |", "|---|---|---|---|"]
    for ids, sigma in ((state["row_ids"], state["sigma_row"]), (state["col_ids"], state["sigma_col"])):
        for sid, p in zip(ids, sigma, strict=True):
            player = pop["all_strategies"][sid]["player"]
            arch = member_architecture(metas[sid], player) if sid in metas else "–"
            lines.append(f"| {sid} | {player} | {arch} | {p:.3f} |")
    return lines


def md_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def stability_tables(do: dict) -> list[tuple]:
    """The DO section's meta-strategy stability and (AT) transfer tables: (title, note, header, rows)."""
    out = []
    st = do.get("sigma_stability")
    if st:
        rows = [[player, sid, f"{r['sigma']:.3f}", f"[{r['interval'][0]:.3f}, {r['interval'][1]:.3f}]",
                 f"{100 * r['in_support']:.0f} %"]
                for player in ("row", "col") for sid, r in st[player].items() if r["sigma"] > 1e-9 or r["in_support"]]
        out.append(("Meta-strategy stability",
                    f"sigma re-solved on {st['resamples']} payoff matrices resampled within each cell's standard "
                    "error (parametric bootstrap): a wide interval or a member rarely in the support means the "
                    "payoff split cannot tell the strategies apart.",
                    ["player", "strategy", "sigma", "95 % interval", "in support"], rows))
    return out


def stability_lines(do: dict, extra: list[tuple] = ()) -> list[str]:
    """The DO section's tables as Markdown: meta-strategy stability, then ``extra`` (a game's own:
    (title, note, header, rows))."""
    lines = []
    for title, note, header, rows in stability_tables(do) + list(extra):
        lines += ["", f"### {title}", "", note, "", *md_table(header, rows)]
    return lines


def write_plot_data(d: Path, m: dict, history: list[dict]) -> None:
    """The plots' numbers as JSON tables (``plots/``) for ``dvc plots show/diff``: the DO gap and the
    game value per iteration, and (AT) robust accuracy per eps, one column per model."""

    write_json(d / "plots" / "do_gap.json", [
        {"iteration": h["iteration"], "gap": h["gap"], "gap_upper": h.get("gap_upper", h["gap"]), "value": h["value"],
         "support_row": h["support_row"], "support_col": h["support_col"]} for h in history])
    curves = {name: r["robust_accuracy_curve"]["points"] for name, r in m["models"].items()
              if r.get("robust_accuracy_curve")}
    if curves:
        eps = [p["eps_value"] for p in next(iter(curves.values()))]
        write_json(d / "plots" / "robustness_curve.json", [
            {"eps": round(e * 255, 6), **{name: pts[k]["accuracy"] for name, pts in curves.items()}}
            for k, e in enumerate(eps)])


def html_page(params, m: dict, d: Path, out: Path, title: str):
    """A report page, opening with the experiment's resolved params (folded)."""


    page = Page(title, d, out)
    page.p(f"Experiment `{m['experiment']}`, game `{params.game}`, seed {m['seed']}. Written by `doracle report` "
           "beside summary.md (the same numbers for terminals); the links below are relative to this folder.")
    page.pre(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, width=100),
             summary=f"resolved params (digest {params.digest()[:16]})")
    return page


def do_html(page, do: dict, history: list[dict], pop: dict, players=("defender", "attacker"),
            extra: tuple[str, ...] | list[str] = (), intro: str | None = None) -> None:
    """The DO story, per iteration: payoff heatmap with standard errors, meta-strategy evolution,
    DO gap with its confidence band, game value and support sizes, what pruning removed and why."""

    row, col = players
    page.h2("Double oracle")
    if intro:
        page.p(intro)
    head, _ = do_section(do, history, players)
    page.bullets([h.removeprefix("- ") for h in head] + list(extra))
    page.img("payoff_heatmap.png", "payoff matrix of the final populations (± standard error on the payoff split)")
    page.img("meta_strategy.png", "meta-strategy evolution (stacked probabilities per strategy)")
    page.img("do_gap.png", "DO gap and gains per iteration; the band reaches the gap's 95% upper bound")
    page.img("do_value.png", "game value, support and population sizes per iteration")
    page.h3("Per iteration")
    page.table(["it", "new", "value", "gap ± se", "upper bound", "status", f"{row} gain ± se", f"{col} gain ± se",
                "support", "population", "pruned"],
               [[h["iteration"], f"{h.get('new_row') or '–'}, {h.get('new_col') or '–'}", f"{h['value']:.4f}",
                 f"{h['gap']:.4f} ± {h.get('gap_stderr', 0):.3f}", f"{h.get('gap_upper', h['gap']):.4f}",
                 h.get("status", "–"), f"{h['row_gain']:.4f} ± {h.get('row_gain_stderr', 0):.3f}",
                 f"{h['col_gain']:.4f} ± {h.get('col_gain_stderr', 0):.3f}", f"{h['support_row']}×{h['support_col']}",
                 f"{h['population_row']}×{h['population_col']}",
                 ", ".join(p["id"] for p in h["pruned"] if p["id"]) or "–"] for h in history], id="iterations")
    page.h3("Pruning")
    records = [[h["iteration"], p["player"], p["id"] or "(none)", p["rule"], p["reason"]]
               for h in history for p in h["pruned"]]
    if records:
        page.table(["it", "player", "strategy", "rule", "why"], records, id="pruning")
    else:
        page.p(f"Nothing was pruned (pruners: the populations stayed within capacity). Final populations: "
               f"{inline(', '.join(pop['state']['row_ids']))} / {inline(', '.join(pop['state']['col_ids']))}.")


def finish_html(page, pop: dict, out: Path, d: Path) -> None:
    """The architecture search (when a best response searched), links to the artifacts, then
    index.html into the report folder ``d`` (to be moved to ``out``)."""

    arch = architecture_section(pop)
    if arch:
        markdown_blocks(page, arch)
    page.h2("Artifacts")
    page.p("Relative links: they work wherever this experiment's results folder is copied.")
    page.raw("<ul><li>" + ", ".join(page.link(out / n, n) for n in ("summary.md", "methods.csv"))
             + ", " + ", ".join(page.link(out / "plots" / f.name, f"plots/{f.name}")
                                for f in sorted((d / "plots").glob("*.json"))) + "</li></ul>")
    artifact_links(page, out.parent, skip=out)
    atomic_write_bytes(d / "index.html", page.text().encode())
    if "methods" in page.tables:  # the methods table as CSV: Snakemake's report shows it as a table

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        head, rows = page.tables["methods"]
        writer.writerow(head)
        writer.writerows(rows)
        atomic_write_bytes(d / "methods.csv", buf.getvalue().encode())
