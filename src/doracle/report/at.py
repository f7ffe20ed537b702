"""The adversarial-training game's report folder (``index.html``, ``summary.md``, its plots and their
data for DVC) from metrics.json and the DO artifacts: the models table (clean and robust accuracy
per attack, the worst case, compute), robust accuracy against eps, the paired comparisons, the
AT diagnostics (gradient-masking checks, the attackers' transfer, the members' disagreement) and
the DO story every game shares (:mod:`doracle.report.do`)."""

from __future__ import annotations

from pathlib import Path

from doracle.artifacts import (
    atomic_dir,
    atomic_write_bytes,
    read_json,
)
from doracle.report.do import (
    architecture_section,
    closed_payoff,
    do_html,
    do_plots,
    do_section,
    finish_html,
    fmt_count,
    fmt_pct,
    fmt_wall,
    html_page,
    md_table,
    savefig,
    stability_lines,
    stability_tables,
    write_plot_data,
)


def plot_curve(models: dict, path: Path) -> None:
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.cm.tab20.colors
    for k, (name, r) in enumerate(models.items()):
        curve = r.get("robust_accuracy_curve")
        if not curve:
            continue
        pts = curve["points"]
        do = name.startswith("do_")  # the DO models stand out: thick solid lines
        ax.plot([p["eps_value"] * 255 for p in pts], [p["accuracy"] for p in pts], marker="o",
                color=colors[(2 * k) % 20 if k < 10 else (2 * k + 1) % 20], lw=2.4 if do else 1.2,
                ls="-" if do else "--", label=name)
    ax.set_xlabel("eps (x 1/255)")
    ax.set_ylabel("robust accuracy (exact expectation)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("accuracy under PGD as a function of eps")
    savefig(fig, path)
    plt.close(fig)


def write_report(params, metrics_path: str, population_path: str, payoff_path: str, out: str) -> Path:
    """The AT report: ``out`` is the report folder (index.html, summary.md, the plots and their
    data for DVC), written whole."""
    with atomic_dir(out, "report", (metrics_path, population_path, payoff_path)) as d:
        _write_report(params, metrics_path, population_path, payoff_path, d, Path(out))
    return Path(out) / "summary.md"


def _write_report(params, metrics_path: str, population_path: str, payoff_path: str, d: Path, out: Path) -> None:
    # matplotlib: loaded only when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    m = read_json(metrics_path)
    pop = read_json(population_path)
    pay = read_json(payoff_path)
    history = pop["state"]["history"]
    do_plots(closed_payoff(pay, pop), history, m["double_oracle"]["tolerance"], d)
    plot_curve(m["models"], d / "robustness_curve.png")

    tm = m["threat_model"]
    attacks = sorted({k for r in m["models"].values() for k in r["robust_accuracy"]},
                     key=lambda k: (k == "worst_case", "autoattack" in k, k))
    aa = tm.get("autoattack")
    aa_text = "not run" if aa is None else (
        f"pyautoattack, version {aa['version']}" + ("" if aa["version"] != "custom" else
        f" ({', '.join(aa['attacks'])}; {aa['apgd_iterations']} APGD iterations, {aa['target_classes']} target "
        "classes: trimmed for CPU)"))
    lines = [
        f"# doracle report: {m['experiment']}",
        "",
        f"Threat model: {tm['norm']}, eps = {tm['eps']} ({tm['eps_value']:.4f}), "
        f"{tm['n_examples']} test examples, seed {tm['seed']}. Mixture numbers are exact expectations over "
        "members, never one sampled draw.",
        "",
        "Attacks: " + "; ".join(f"{k}: {v['name']} ({v['steps']} steps, step {v['rel_step_size']}·eps, "
                                f"{v['restarts']} restart(s))" for k, v in tm["attacks"].items())
        + f"; per member: {', '.join(tm['per_member']) or 'none'}; AutoAttack: {aa_text}.",
        "",
        "| model | clean | " + " | ".join(attacks) + " |",
        "|---|---|" + "---|" * len(attacks),
    ]
    for name, r in m["models"].items():
        ra = r["robust_accuracy"]
        lines.append(f"| {name} | {fmt_pct(r['clean_accuracy'])} | " + " | ".join(fmt_pct(ra.get(k)) for k in attacks) + " |")
    lines += [
        "",
        "## Methods compared (same evaluation; compute of every job that produced each model)",
        "",
        "| model | clean | FGSM | PGD | ARC | AutoAttack | worst case | jobs | wall s | passes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in m["models"].items():
        ra, c = r["robust_accuracy"], r.get("compute") or {}
        wall = fmt_wall(m, name)
        lines.append(f"| {name} | {fmt_pct(r['clean_accuracy'])} | {fmt_pct(ra.get('fgsm'))} | {fmt_pct(ra.get('pgd'))} | "
                     f"{fmt_pct(ra.get('arc'))} | {fmt_pct(ra.get('autoattack'))} | {fmt_pct(ra.get('worst_case'))} | "
                     f"{c.get('jobs', '–')} | {wall} | {fmt_count(c.get('passes'))} |")
    lines += ["", "Compute: every job upstream of the model (data preparation excepted): for the DO targets the "
              "base model and every best response, payoff, solve and prune job; wall seconds from each job's "
              "own record (its process, start-up included, whether Snakemake or DVC ran it), passes = "
              "per-example forward + backward passes through networks, counted by the jobs (training, attacks, "
              "payoff cells)."]
    extra_md, extra_tables = at_diagnostics(m)
    lines += extra_md
    do = m["double_oracle"]
    mix = m["models"]["do_mixture"]
    head, table = do_section(do, history)
    lines += [
        "",
        "Accuracies in %. `worst_case` is the per-example minimum over every attack run; "
        "`*_per_member` attacks each member and keeps, per example, the perturbation worst for the mixture; "
        "`autoattack` on a mixture attacks the logit-averaged ensemble. do_uniform: uniform mixture over the "
        "final DO population (a reference).",
        "",
        "![robust accuracy vs eps](robustness_curve.png)",
        "",
        "### Gradient-masking checks",
        "",
        *([f"- WARNING {w}" for w in m.get("warnings", [])] or
          ["- all models: logits out, non-zero input gradients, deterministic forward"]),
        "",
        "## Double oracle",
        "",
        *head,
        "- deployed mixture: " + ", ".join(f"{i} ({p:.3f})" for i, p in zip(mix["members"], mix["probs"], strict=True)),
        f"- best single member: {', '.join(m['models']['do_best_member']['members'])}",
        *table,
        *stability_lines(do, transfer_table(m)),
        *architecture_section(pop),
    ]
    atomic_write_bytes(d / "summary.md", ("\n".join(lines) + "\n").encode())
    write_plot_data(d, m, history)

    page = html_page(params, m, d, out, title=f"doracle report: {m['experiment']} (adversarial training)")
    page.h2("Methods compared")
    page.p(lines[2])
    page.p(lines[4])
    page.table(["model", "clean", "FGSM", "PGD", "ARC", "AutoAttack", "worst case", "jobs", "wall s", "passes"],
               [[name, fmt_pct(r["clean_accuracy"]), *(fmt_pct(r["robust_accuracy"].get(k)) for k in
                 ("fgsm", "pgd", "arc", "autoattack", "worst_case")), (r.get("compute") or {}).get("jobs", "–"),
                 fmt_wall(m, name), fmt_count((r.get("compute") or {}).get("passes"))] for name, r in m["models"].items()],
               id="methods", row_class=lambda row: "do" if row[0].startswith("do_") else None)
    page.p("Accuracies in %; total compute: every job upstream of the model (wall seconds recorded by each job, "
           "start-up included; passes = per-example forward + backward passes through networks).")
    for title, note, header, rows in extra_tables:
        page.h3(title)
        page.p(note)
        page.table(header, rows)
    page.h3("Every attack")
    page.table(["model", "clean", *attacks], [[name, fmt_pct(r["clean_accuracy"]),
                                               *(fmt_pct(r["robust_accuracy"].get(k)) for k in attacks)]
                                              for name, r in m["models"].items()])
    page.p("`worst_case` is the per-example minimum over every attack run; `*_per_member` attacks each member "
           "and keeps, per example, the perturbation worst for the mixture; `autoattack` on a mixture attacks the "
           "logit-averaged ensemble.")
    page.h2("Robust accuracy vs eps")
    page.img("robustness_curve.png", "accuracy under PGD as a function of eps")
    page.h3("Gradient-masking checks")
    page.bullets([f"WARNING {w}" for w in m.get("warnings", [])] or
                 ["all models: logits out, non-zero input gradients, deterministic forward"])
    do_html(page, m["double_oracle"], history, pop, players=("defender", "attacker"), extra=[
        "deployed mixture: " + ", ".join(f"{i} ({p:.3f})" for i, p in zip(mix["members"], mix["probs"], strict=True)),
        f"best single member: {', '.join(m['models']['do_best_member']['members'])}"])
    for title, note, header, rows in stability_tables(m["double_oracle"]) + transfer_table(m):
        page.h3(title)
        page.p(note)
        page.table(header, rows)
    finish_html(page, pop, out, d)


def _points(v: float) -> str:
    return f"{100 * v:+.1f}"


def at_diagnostics(m: dict) -> tuple[list[str], list[tuple]]:
    """The AT report's matched budgets and paired comparisons: markdown lines, and (title, note,
    header, rows) tables for the HTML page."""
    tables = []
    matched = {k: r["budget"] for k, r in m["models"].items() if r.get("budget")}
    if matched:
        rows = [[k, b["matched"], b["do_defender_epochs"], fmt_count(b["do_passes"]), b["steps"],
                 fmt_count((m["models"][k].get("compute") or {}).get("passes"))] for k, b in matched.items()]
        tables.append(("Baselines matched to the DO run's budget",
                       "epochs: as many epochs as DO's defenders trained in total; passes: as many training steps "
                       "as make the whole DO run's counted passes (to within one batch).",
                       ["model", "matched", "DO defender epochs", "DO passes", "steps", "passes"], rows))
    comps = m.get("comparisons") or {}
    if comps:
        rows = [[k, _points(c["difference"]), f"[{_points(c['interval'][0])}, {_points(c['interval'][1])}]",
                 c["verdict"]] for k, c in comps.items()]
        n = next(iter(comps.values()))["examples"]
        tables.append(("Paired comparisons (worst case)",
                       f"Worst-case robust accuracy, difference in points, paired over the same {n} test examples; "
                       "95 % bootstrap interval over examples (one seed: docs/methods.md has several).",
                       ["comparison", "difference", "95 % interval", "verdict"], rows))
    lines = []
    for title, note, header, rows in tables:
        lines += ["", f"### {title}", "", note, "", *md_table(header, rows)]
    return lines, tables


def transfer_table(m: dict) -> list[tuple]:
    """The AT DO section's diversity diagnostics: the attackers' transfer and the members' disagreement."""
    out = []
    tr = m.get("transfer") or {}
    if tr:
        rows = [[sid, ", ".join(t["targets"]), fmt_pct(t["accuracy_targets"]), fmt_pct(t["accuracy_others"]),
                 "–" if t["transfer_ratio"] is None else f"{t['transfer_ratio']:.2f}"] for sid, t in tr.items()]
        out.append(("Transfer of the attackers",
                    "Accuracy of the defenders each attacker was computed against and of the others; transfer "
                    "ratio = the others' error / the targets' error (near 1: the members are too alike for a "
                    "mixture to help).",
                    ["attacker", "computed against", "accuracy (targets)", "accuracy (others)", "transfer ratio"],
                    rows))
    dis = {name: d for name, r in m["models"].items() for d in [(r.get("diagnostics") or {})] if d}
    if dis:
        rows = [[name, k.removeprefix("disagreement_"), fmt_pct(v)] for name, d in dis.items() for k, v in d.items()]
        out.append(("Members' disagreement",
                    "Share of test examples, perturbed by the attack on the whole mixture, on which the members do "
                    "not all predict the same class: a mixture can only beat its best member where they disagree.",
                    ["model", "attack", "examples with disagreement"], rows))
    return out
