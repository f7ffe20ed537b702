"""The games the double-oracle pipeline plays, by name (params ``game``): ``at`` | ``gan``.

A game is a :class:`Game` registered in :data:`GAMES`: its two players (the row player maximises
the payoff), the models it trains outside the DO loop, its evaluation targets, the params each of
its jobs reads, and one function per job shape (train, init, best response, payoff, evaluate,
metrics, report). The pipeline (:mod:`doracle.pipeline`: Snakemake rules and DVC stages), the CLI
and the engine's light jobs (LP solve, pruning: :mod:`doracle.games.population`) are the same for
every game and dispatch by name, so a new game is one new package (like :mod:`doracle.games.at`)
whose game module subclasses :class:`Game`, registers it, and is named in :data:`GAMES`' lazy table.

Entries are lazy (name -> module), and the modules they name (:mod:`doracle.games.at.game`,
:mod:`doracle.games.gan.game`) are torch-free: their network jobs import the game's job module
(:mod:`doracle.games.at.jobs`, :mod:`doracle.games.gan.jobs`) when they run, so params validate
and the light jobs (solve, prune, metrics, report) start without torch.
"""

from __future__ import annotations

from pathlib import Path

from doracle.config import nas_families
from doracle.registry import GAMES  # noqa: F401 (declared in the lowest layer: params check game names)


class Game:
    """The shape of a game; subclasses fill in the class attributes and the job methods.

    Every job method takes the validated params first and writes its outputs atomically; it
    returns the one line the CLI prints (or, for ``report``, the summary path).
    """

    name: str
    #: (row player, column player); the row player maximises the payoff U[row, col]
    players: tuple[str, str]
    #: strategy id prefixes of the two players ("d" -> d000, d001, ...)
    id_prefixes: tuple[str, str]
    #: the player whose meta-strategy is deployed and evaluated (AT: the defender; GAN: the
    #: generator); the other player answers its final meta-strategy in the closing step
    deployed: str
    #: the params (dotted keys) each of the game's stages reads: recorded in its artifacts,
    #: tracked by DVC and Snakemake. Stages: train, <each train role>, baseline, init,
    #: best_response_<each responders() key>, payoff, closing, evaluate, metrics, report (data,
    #: solve, prune are common)
    stage_params: dict[str, tuple[str, ...]]
    #: the column headed by this label in the report's models table, and how to read it
    headline: str = ""
    #: the best-response job that trains both players together (:meth:`responders`)
    PAIR = "pair"
    #: params (dotted keys) that change the job graph itself, beyond experiment, game and
    #: do.iterations (pipeline.DAG_PARAMS): after changing one, dvc.yaml must be regenerated
    dag_params: tuple[str, ...] = ()

    # ------------------------------------------------------------------ the job graph
    def train_roles(self, params) -> tuple[str, ...]:
        """Models trained once, outside the DO loop, by the ``train`` rule (``results/<exp>/<role>/``)."""
        return ()

    def init_roles(self, params) -> tuple[str, ...]:
        """Which of :meth:`train_roles` the init job reads."""
        return ()

    def eval_roles(self, params) -> tuple[str, ...]:
        """Which of :meth:`train_roles` the evaluation jobs read (e.g. a feature classifier)."""
        return ()

    def baselines(self, params) -> tuple[str, ...]:
        """Standalone methods trained and evaluated beside the DO models (``results/<exp>/baselines/<m>/``)."""
        return ()

    def baseline_uses(self, params, method: str) -> dict[str, str]:
        """Pipeline files a baseline's training reads besides the data (``--uses NAME=PATH``): e.g. the
        closed DO population, for a baseline matched to the DO run's counted passes."""
        return {}

    def targets(self, params) -> tuple[str, ...]:
        """The DO evaluation targets (one evaluation job each, reading the closed population)."""
        raise NotImplementedError

    def responders(self, params) -> dict[str, tuple[str, ...]]:
        """Each iteration's best-response jobs, ``{job's --player: the players whose new strategy it
        writes}``: one job per player (the default), or ``{"pair": both players}`` for a game whose
        oracle trains both together (the GAN's ``gan.oracle: cotrained``)."""
        return {p: (p,) for p in self.players}

    @property
    def closing_player(self) -> str:
        """The player of the closing best response: the deployed player's opponent."""
        return self.players[1 - self.players.index(self.deployed)]

    def check_names(self, params) -> None:
        """Check the registry names the game's params use (imports torch)."""

    def warnings(self, params) -> list[str]:
        """Valid but doubtful settings, for ``doracle check-params`` to print."""
        return []

    def stage_keys(self, params, stage: str) -> tuple[str, ...]:
        """The params ``stage`` reads: :attr:`stage_params`, plus the whole ``nas`` section for the
        best response of every player that can search architectures (``config.nas_families``),
        searching or not: so ``dvc exp run -S nas.enabled=true`` reruns those stages, and turning
        the search on leaves dvc.yaml as it is."""

        keys = self.stage_params[stage]
        player = stage.removeprefix("best_response_")
        players = self.players if player == self.PAIR else (player,)
        if player != stage and set(players) & set(nas_families(self.name)):
            keys = (*keys, "nas")
        return keys

    def strategy_id(self, player: str, iteration: int) -> str:
        return f"{self.id_prefixes[self.players.index(player)]}{iteration:03d}"

    # ------------------------------------------------------------------ the jobs
    def train(self, params, role: str, method: str | None, data: str, out: str, uses: dict | None = None) -> str:
        raise NotImplementedError

    def init(self, params, data: str, uses: dict[str, str], init_out: str, out: str) -> str:
        raise NotImplementedError

    def best_response(self, params, player: str, data: str, state: str, iteration: int, out: str) -> str:
        raise NotImplementedError

    def payoff(self, params, data: str, state: str, iteration: int, row: str, col: str, out: str) -> dict:
        raise NotImplementedError

    def closing_job(self, params, data: str, state: str, model_out: str, out: str) -> dict:
        """The closing step (:func:`doracle.games.population.close_job`): the closing best response
        to the deployed player's final meta-strategy, its payoff cells and the last meta-solve;
        returns the closed population's document."""
        raise NotImplementedError

    def close(self, params, data: str, state: str, model_out: str, out: str) -> str:
        """The closing job (:meth:`closing_job`) and the line the CLI prints."""
        c = self.closing_job(params, data, state, model_out, out)["state"]["closing"]
        return (f"closing {c['id']} ({self.closing_player}): exploitability of the {self.deployed} mixture "
                f"{c['exploitability']:.4f} ± {c['exploitability_stderr']:.4f}; value {c['value_before']:.4f} -> "
                f"{c['value']:.4f}")

    def evaluate(self, params, data: str, label: str, out: str, *, population: str | None,
                 checkpoint: str | None, state_path: str | None, uses: dict[str, str]) -> str:
        raise NotImplementedError

    def metrics(self, params, population: str, evaluations: list[str], out: str) -> str:
        raise NotImplementedError

    def report(self, params, metrics: str, population: str, payoff: str, out: str) -> Path:
        raise NotImplementedError

    # ------------------------------------------------------------------ DVC: metrics and plots
    def headline_metrics(self, metrics: dict) -> dict:
        """headline.json (``dvc metrics show/diff``, ``dvc exp show``): flat keys, numbers only, from
        metrics.json; deterministic (no durations, no timestamps). The DO summary (the deployed
        mixture's exploitability from the closing step among it); games add theirs."""
        do = metrics["double_oracle"]
        closing = {} if do.get("exploitability") is None else {
            "do_exploitability": do["exploitability"], "do_exploitability_stderr": do["exploitability_stderr"]}
        return {"do_gap": do["final_gap"], "do_gap_upper": do.get("final_gap_upper", do["final_gap"]),
                "do_value": do["value"], "do_iterations_run": do["iterations_run"],
                "do_support_size": do["support_size"], **closing}

    def dvc_plots(self, params, report: str) -> list[dict]:
        """dvc.yaml's ``plots:`` of one experiment (``report``: its report folder): the DO gap and
        the game value from ``plots/do_gap.json``, and the DO story's images. Games add theirs."""
        exp = params.experiment
        data = f"{report}/plots/do_gap.json"
        return [
            {f"{exp}: DO gap": {"x": "iteration", "y": {data: ["gap", "gap_upper"]}, "title": f"{exp}: DO gap "
                                "(and its 95% upper bound)", "x_label": "DO iteration", "y_label": "gap"}},
            {f"{exp}: game value": {"x": "iteration", "y": {data: "value"}, "title": f"{exp}: restricted game value",
                                    "x_label": "DO iteration", "y_label": "value"}},
            *({f"{report}/{png}": {}} for png in ("payoff_heatmap.png", "meta_strategy.png", "do_gap.png",
                                                   "do_value.png")),
        ]


def game_of(params) -> Game:
    """The :class:`Game` that ``params.game`` names."""
    return GAMES.get(params.game)
