"""The GAN experiment's report folder: summary.md, the DO story (shared with the AT report) and
sample grids of the deployed mixture, each final generator, the base GAN and real images."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from doracle.artifacts import atomic_dir, atomic_write_bytes, input_digest, read_json, write_json
from doracle.errors import ArtifactError
from doracle.report.do import (
    architecture_section,
    closed_payoff,
    do_html,
    do_plots,
    do_section,
    finish_html,
    fmt_count,
    fmt_wall,
    html_page,
    savefig,
    stability_lines,
    stability_tables,
    write_plot_data,
)
from doracle.report.html import markdown_blocks, markdown_table


def plot_grid(images, path: Path, title: str) -> None:
    """A square grid of images (N, C, H, W) in [0, 1]."""
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    x = np.asarray(images, dtype=np.float32)
    n, c, h, w = x.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    # thin separators in the background colour: white (0 under gray_r) for grayscale, white (1) for RGB
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 0.0 if c == 1 else 1.0, dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, cols)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[k].transpose(1, 2, 0)
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray_r" if c == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    savefig(fig, path)
    plt.close(fig)


def plot_scores(models: dict, floor: float | None, path: Path) -> None:
    """FID (lower is better) and classes covered per model, side by side."""
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    names = list(models)
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 + 0.35 * len(names)), sharey=True)
    colors = ["tab:red" if n == "do_mixture" else "tab:grey" if n == "base_gan" else "tab:blue" for n in names]
    fids = [models[n]["fid"] for n in names]
    ivals = [models[n].get("fid_interval") for n in names]
    err = None if any(i is None for i in ivals) else [[f - i[0] for f, i in zip(fids, ivals, strict=True)],
                                                       [i[1] - f for f, i in zip(fids, ivals, strict=True)]]
    axes[0].barh(names, fids, color=colors, xerr=err, capsize=3)  # error bars: the 95% bootstrap intervals
    if floor is not None:
        axes[0].axvline(floor, color="black", ls="--", lw=0.8, label=f"real vs real {floor:.2f}")
        axes[0].legend(fontsize=7)
    axes[0].set_xlabel("FID, reference classifier features (lower is better)" + ("" if err is None else
                       "; bars: 95% bootstrap intervals"))
    axes[1].barh(names, [models[n]["classes_covered"] for n in names], color=colors)
    axes[1].set_xlabel("classes covered")
    axes[0].invert_yaxis()
    savefig(fig, path)
    plt.close(fig)


def decode_grid(grid: dict) -> np.ndarray:
    """:func:`doracle.games.gan.jobs.encode_grid` undone: (N, C, H, W) floats in [0, 1]."""

    x = np.frombuffer(base64.b64decode(grid["uint8_base64"]), dtype=np.uint8).reshape(grid["shape"])
    return x.astype(np.float32) / 255.0


def _samples(metrics: dict, d: Path) -> list[str]:
    """Plot the sample grids the evaluation jobs drew (seeded, the same latents for every model) and
    return their markdown lines. Torch-free: the evaluation files (metrics.json's inputs, each
    checked against the hash metrics.json recorded) hold the images."""

    grids, real = {}, None
    for path, digest in metrics["inputs"].items():
        if not path.endswith(".json"):
            continue
        e = read_json(path)
        if e.get("kind") != "evaluation":
            continue
        if input_digest(path) != digest:
            raise ArtifactError(f"{path} changed since the metrics job read it: rerun the metrics job "
                                "(snakemake -c2 --forcerun metrics)")
        grids.update({name: r["grid"] for name, r in e["models"].items() if "grid" in r})
        real = real or e.get("real_grid")
    mix = metrics["models"]["do_mixture"]
    mixture = "DO mixture: " + ", ".join(f"{i} {p:.2f}" for i, p in zip(mix["members"], mix["probs"], strict=True))
    lines = []
    for name, r in metrics["models"].items():  # the metrics job's order: DO targets, then baselines
        if name in grids:
            title = mixture if name == "do_mixture" else name if "checkpoint" in r else f"generator {name}"
            plot_grid(decode_grid(grids[name]), d / f"samples_{name}.png", title)
            lines.append(f"![{title}](samples_{name}.png)")
    if real is not None:
        plot_grid(decode_grid(real), d / "samples_real.png", "real (test split)")
        lines.append("![real (test split)](samples_real.png)")
    return lines


def write_fid_data(d: Path, m: dict) -> None:
    """FID and classes covered per model as a JSON table (``plots/scores.json``) for ``dvc plots``."""

    write_json(d / "plots" / "scores.json", [{"model": n, "fid": r["fid"], "inception_score": r["inception_score"],
                                               "classes_covered": r["classes_covered"]} for n, r in m["models"].items()])


def write_report(params, metrics_path: str, population_path: str, payoff_path: str, out: str) -> Path:
    """The GAN report: ``out`` is the report folder, written whole."""
    # matplotlib: loaded only when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    m = read_json(metrics_path)
    pop = read_json(population_path)
    pay = read_json(payoff_path)
    history = pop["state"]["history"]
    players = ("discriminator", "generator")
    with atomic_dir(out, "report", (metrics_path, population_path, payoff_path)) as d:
        do_plots(closed_payoff(pay, pop), history, m["double_oracle"]["tolerance"], d, players=players,
                 value="V(G, D)", vrange=None)
        plot_scores(m["models"], m.get("fid_real_vs_real"), d / "scores.png")
        grids = _samples(m, d)
        ref, budget = m["reference"], m["budget"]
        mix = m["models"]["do_mixture"]
        lines = [
            f"# doracle report: {m['experiment']} (GAN)",
            "",
            f"Generated images scored in the features of the reference classifier ({ref['arch']}, test accuracy "
            f"{ref['test_accuracy']:.3f}): {mix['n_fake']} samples per model (the same latents for every model) "
            f"against the {mix['n_real']} real images outside the training split; {mix['features']}. FID of as "
            f"many real training images against the same real images (the floor at this sample size): "
            f"{m['fid_real_vs_real']:.3f}. IS over splits of {mix.get('is_split_size', '?')} images. "
            f"{_interval_note(mix)} Seed {m['seed']}.",
            "",
            "| model | FID ↓ | IS ↑ | classes covered | precision | recall | density | coverage | jobs | wall s | "
            "passes |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        inception = all("inception_fid" in r for r in m["models"].values())
        if inception:  # gan.metrics.inception: Inception-v3 FID / IS beside the reference classifier's
            lines[-2] = lines[-2].replace("| jobs |", "| Inception FID ↓ | Inception IS ↑ | jobs |")
            lines[-1] += "---|---|"
        for name, r in m["models"].items():
            c = r.get("compute") or {}
            wall = fmt_wall(m, name)
            extra = (f"{r['inception_fid']:.2f} | {r['inception_is_mean']:.2f} | " if inception else "")
            lines.append(f"| {name} | {r['fid']:.3f}{_bracket(r.get('fid_interval'))} | "
                         f"{r['inception_score']:.2f} ± {r['is_std']:.2f} | "
                         f"{r['classes_covered']}/{r['num_classes']} | {r['precision']:.3f} | {r['recall']:.3f} | "
                         f"{r['density']:.3f} | {r['coverage']:.3f} | {extra}{c.get('jobs', '–')} | {wall} | "
                         f"{fmt_count(c.get('passes'))} |")
        head, table = do_section(m["double_oracle"], history, players)
        lines += [
            "",
            f"Budget: the DO run plans {budget['do_player_epochs']} player-epochs (a warm-up or pair epoch trains "
            f"both players, a frozen best-response epoch one); base_gan trains {budget['base_gan_epochs']} epochs "
            f"({budget['base_gan_player_epochs']} player-epochs)"
            + (f"; base_gan_passes trains {budget['base_gan_passes']['epochs']} epochs, as many counted passes as the "
               f"whole DO run ({fmt_count(budget['base_gan_passes']['do_passes'])})" if "base_gan_passes" in budget else "")
            + ". Compute columns: every job upstream of the model "
            "(the reference classifier and data preparation excepted); passes = per-example forward + backward "
            "passes through networks.",
            "",
            *comparison_lines(m),
            "",
            "![FID and classes covered](scores.png)",
            "",
            "## Samples",
            "",
            "Each image of the DO mixture draws its generator from sigma_G (seeded); the same latents for every "
            "single generator.",
            "",
            *grids,
            "",
            "## Double oracle",
            "",
            "Payoff: V(G, D) = E log D(x) + E log(1 - D(G(z))) on the payoff split and fixed latents; the "
            "discriminator (rows) maximises it, the generator (columns) minimises it (-log 4 = -1.386 at the "
            "ideal equilibrium).",
            "",
            *head,
            "- deployed generator mixture: " + ", ".join(f"{i} ({p:.3f})" for i, p in zip(mix["members"], mix["probs"],
                                                                                         strict=True)),
            *table,
            *stability_lines(m["double_oracle"]),
            *architecture_section(pop),
        ]
        atomic_write_bytes(d / "summary.md", ("\n".join(lines) + "\n").encode())
        write_plot_data(d, m, history)
        write_fid_data(d, m)
        _write_html(params, m, pop, history, lines, grids, d, Path(out))
    return Path(out) / "summary.md"


def _bracket(interval) -> str:
    return "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"


def _interval_note(r: dict) -> str:
    if not r.get("bootstrap"):
        return "No bootstrap intervals (gan.metrics.bootstrap: 0)."
    return (f"FID intervals: 95%, {r['bootstrap']} bootstrap resamples of the real images and the latents, "
            "centred on the point estimate (doracle.evaluation.intervals).")


def comparison_lines(m: dict) -> list[str]:
    """The paired FID comparisons of the metrics job, as a table and one verdict line."""
    comps = m.get("comparisons") or {}
    if not comps:
        return ["No paired FID comparison (no base GAN, or gan.metrics.bootstrap: 0)."]
    lines = ["Paired FID differences (the same real images and latents for both models; 95% bootstrap "
             "interval; lower is better):", "", "| comparison | FID difference | 95% interval | verdict |",
             "|---|---|---|---|"]
    lines += [f"| {k} | {c['difference']:+.3f} | {_bracket(c['interval']).strip()} | {c['verdict']} |"
              for k, c in comps.items()]
    mix = comps.get("do_mixture - base_gan")
    if mix is not None:
        word = {"lower": "lower (better) than", "higher": "higher (worse) than",
                "not distinguishable": "not distinguishable from"}.get(mix["verdict"], "not compared with")
        lines += ["", f"On this run the DO mixture's FID is {word} the base GAN's ({mix['difference']:+.3f}, "
                      f"interval {_bracket(mix['interval']).strip()}); over seeds: docs/performance.md, "
                      "\"DO-GAN vs base GAN\"."]
    return lines


def _write_html(params, m: dict, pop: dict, history: list[dict], lines: list[str], grids: list[str], d: Path,
                out: Path) -> None:
    """index.html of the GAN report: the models table (FID / IS, total compute), samples, DO story."""

    page = html_page(params, m, d, out, title=f"doracle report: {m['experiment']} (GAN)")
    page.h2("Models compared")
    table_at = next(k for k, line in enumerate(lines) if line.startswith("| model |"))
    page.p(lines[2])
    # the models table as summary.md has it (one row per model), then the budget and verdict lines
    k = table_at
    while k < len(lines) and lines[k].startswith("|"):
        k += 1
    rows = markdown_table(lines[table_at:k])
    page.table(rows[0], rows[1:], id="methods", row_class=lambda row: "do" if row[0].startswith("do_") else None)
    for line in lines[k:]:
        if line.startswith("Budget:") or line.startswith("On this run"):
            page.p(line)
    comp_at = next((j for j, line in enumerate(lines) if line.startswith("| comparison |")), None)
    if comp_at is not None:  # the paired FID differences, as summary.md has them
        end = comp_at
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        rows = markdown_table(lines[comp_at:end])
        page.p(lines[comp_at - 2])
        page.table(rows[0], rows[1:], id="comparisons")
    page.img("scores.png", "FID (lower is better) and classes covered per model")
    page.h2("Samples")
    page.p("Each image of the DO mixture draws its generator from sigma_G (seeded); the same latents for every "
           "single generator.")
    markdown_blocks(page, grids)
    do_html(page, m["double_oracle"], history, pop, players=("discriminator", "generator"),
            intro="Payoff: V(G, D) = E log D(x) + E log(1 - D(G(z))) on the payoff split and fixed latents; the "
                  "discriminator (rows) maximises it, the generator (columns) minimises it (-log 4 = -1.386 at the "
                  "ideal equilibrium).",
            extra=["deployed generator mixture: " + ", ".join(
                f"{i} ({p:.3f})" for i, p in zip(m["models"]["do_mixture"]["members"],
                                                   m["models"]["do_mixture"]["probs"], strict=True))])
    for title, note, header, rows in stability_tables(m["double_oracle"]):
        page.h3(title)
        page.p(note)
        page.table(header, rows)
    finish_html(page, pop, out, d)
