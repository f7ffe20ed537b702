"""GAN metrics (DO-GAN, issue 12): FID and an Inception-Score-style score with the features of a
classifier trained on the same data set (offline, any device), Inception-based FID / IS by a
switch (clusters), classes covered, and precision / recall / density / coverage.

**FID** (Heusel et al. 2017): ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` between
Gaussians fitted to features of real and generated images (float64; torchmetrics 1.9's formulas,
computed here: importing torchmetrics costs about twice ``import torch``, and the tests check the
two agree) in the space of :class:`ClassifierFeatures`. The
features are the classifier's **penultimate activations** (the input of its last linear layer,
e.g. 128-d for ``doracle_cnn_small``), for the reason Inception's FID uses the 2048-d pool
features and not its logits: logits are trained to be invariant to everything but the class, so a
Gaussian on 10 logits measures mostly class balance and confidence (what IS and classes covered
already report), while the penultimate layer keeps within-class variation (stroke, thickness,
style) that a generator must also reproduce.

**IS** (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` from the classifier's softmax
(torchmetrics' ``InceptionScore.compute`` step for step, on the classifier's **logits**), mean and
standard deviation over ``splits`` random splits. It lies in ``[1, num_classes]``: 1 when every
image gets the same prediction, ``num_classes`` when predictions are confident and balanced.
The split permutation is drawn from torch's global generator under ``torch.random.fork_rng`` with
a given seed (reproducible, the caller's RNG untouched).

**Classes covered**: the number of classes that receive at least a share (default 1%) or a count
of the classifier's predictions on the generated images (digits: 10 known classes).

**Precision, recall, density, coverage** (Kynkäänniemi et al. 2019; Naeem et al. 2020), in the
same penultimate feature space, with ``r_i`` the distance from real feature ``X_i`` to its k-th
nearest other real feature (k = 5, Naeem et al.'s choice): precision = share of fakes inside some
real ball ``B(X_i, r_i)``; recall = share of reals inside some fake ball (radii from the fakes);
density = mean number of real balls containing a fake / k; coverage = share of real balls that
contain at least one fake. Coverage is ~1 for a sample of the same distribution (1 for the real
set itself) and ~0 for data off the real manifold.

**torchmetrics** serves the Inception path only (imported there): it uses ``normalize=True`` (floats in [0, 1] -> uint8, as the
Inception network expects) and repeats grayscale images to 3 channels; it needs ``torch-fidelity``
(``pip install 'doracle[inception]'``) and downloads the Inception weights on first use into
torch hub's cache (``$TORCH_HOME/hub/checkpoints``): on a cluster fetch them once on a node with
network into a shared ``TORCH_HOME``. The tests never fetch them.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from doracle.errors import DoracleError
from doracle.evaluation.intervals import centered_interval
from doracle.models.mixture import eval_mode

LAYERS = ("penultimate", "logits")


class InceptionUnavailable(DoracleError):
    """Inception-based metrics were asked for but torch-fidelity or the Inception weights are missing."""


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class ClassifierFeatures(nn.Module):
    """A trained classifier as a torchmetrics feature extractor: images -> ``(N, num_features)``
    float64 features, ``layer`` = ``"penultimate"`` (the input of the classifier's last
    ``nn.Linear``, whose output must be the logits) or ``"logits"``.

    Takes float images in [0, 1] (as the classifiers do) or uint8 in [0, 255]; runs the classifier
    in eval mode without gradients (its modes are restored); returns the features on the
    classifier's device.
    """

    def __init__(self, classifier: nn.Module, layer: str = "penultimate") -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"feature layer {layer!r}: one of {', '.join(LAYERS)}")
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the classifier has no nn.Linear head to take features from")
        self.classifier, self.layer, self.head = classifier, layer, linears[-1]
        self.num_features: int = self.head.in_features if layer == "penultimate" else self.head.out_features

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return self  # the classifier's modes are the caller's; forward runs it in eval mode

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = imgs.float() / 255 if imgs.dtype == torch.uint8 else imgs.float()
        seen: dict[str, torch.Tensor] = {}

        def hook(_module, args, out):
            seen["input"], seen["output"] = args[0], out

        handle = self.head.register_forward_hook(hook)
        try:
            with eval_mode([self.classifier]):
                logits = self.classifier(x.to(_device(self.classifier)))
        finally:
            handle.remove()
        if "output" not in seen or not torch.equal(seen["output"], logits):
            raise ValueError("the classifier's last nn.Linear does not produce its logits: "
                             "penultimate features cannot be read from it")
        out = seen["input"].flatten(1) if self.layer == "penultimate" else logits
        return out.double()


def extract(features: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """``features(images)`` in batches, concatenated."""
    return torch.cat([features(b) for b in images.split(batch_size)])


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of ``(N, d)`` features, in float64 (torchmetrics' formula:
    ``(F^T F - N mu^T mu) / (N - 1)``)."""
    f = features.double()
    n = f.shape[0]
    if n < 2:
        raise ValueError(f"FID needs at least 2 samples on each side (got {n})")
    mu = f.sum(0) / n
    return mu, (f.t() @ f - n * torch.outer(mu, mu)) / (n - 1)


def fid_from_stats(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, the trace of the square root as the sum
    of the square roots of the eigenvalues of ``S1 S2`` (torchmetrics 1.9's computation)."""
    c = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * c)


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets ``(N, d)`` and ``(M, d)``."""
    return fid_from_stats(*gaussian_stats(real), *gaussian_stats(fake.to(real.device)))


def frechet_distance(features: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                     batch_size: int = 256) -> float:
    """FID between ``real`` and ``fake`` images in the space of ``features`` (a module returning
    ``(N, d)`` features, e.g. :class:`ClassifierFeatures`)."""
    return fid_from_features(extract(features, real, batch_size=batch_size),
                             extract(features, fake, batch_size=batch_size))


def score_from_logits(logits: torch.Tensor, *, splits: int = 10, seed: int = 0,
                      split_size: int | None = None) -> tuple[float, float]:
    """(mean, std) of ``exp(E KL(p(y|x) || p(y)))`` over ``splits`` random splits of a seeded
    permutation (torch's CPU generator forked: the caller's stream is untouched); std 0 for one
    split. torchmetrics' ``InceptionScore.compute``, step for step; with ``split_size``, the
    permutation's first ``splits * split_size`` images, so every split has exactly that many."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        idx = torch.randperm(logits.shape[0])
    if split_size is not None:
        idx = idx[:splits * split_size]
    f = logits[idx.to(logits.device)]
    prob, log_prob = f.softmax(dim=1).chunk(splits, dim=0), f.log_softmax(dim=1).chunk(splits, dim=0)
    kl = torch.stack([(p * (lp - p.mean(dim=0, keepdim=True).log())).sum(dim=1).mean().exp()
                      for p, lp in zip(prob, log_prob, strict=True)])
    return float(kl.mean()), float(kl.std()) if len(kl) > 1 else 0.0


def inception_score(logit_features: nn.Module, images: torch.Tensor, *, splits: int = 10, seed: int = 0,
                    batch_size: int = 256) -> tuple[float, float]:
    """(mean, std) of ``exp(E KL(p(y|x) || p(y)))`` over ``splits`` seeded random splits, with
    ``p(y|x)`` the softmax of ``logit_features`` (e.g. ``ClassifierFeatures(c, "logits")``)."""
    return score_from_logits(extract(logit_features, images, batch_size=batch_size), splits=splits, seed=seed)


def _seeded_score(metric, seed: int) -> tuple[float, float]:
    """torchmetrics' ``InceptionScore.compute()`` (the Inception path) with its split permutation
    drawn from ``seed`` (the global CPU generator is forked); std 0 for a single split."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")  # std of one split
        torch.default_generator.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std) if metric.splits > 1 else 0.0


@torch.no_grad()
def predicted_class_counts(classifier: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """How many of ``images`` the classifier assigns to each class (int64, length num_classes)."""
    logits = extract(ClassifierFeatures(classifier, "logits"), images, batch_size=batch_size)
    return torch.bincount(logits.argmax(1).cpu(), minlength=logits.shape[1])


def classes_covered(classifier: nn.Module, images: torch.Tensor, *, min_share: float | None = None,
                    min_count: int | None = None, batch_size: int = 256) -> int:
    """The number of classes receiving at least ``min_share`` of the predictions (default 0.01)
    or, instead, at least ``min_count`` of them."""
    if min_share is not None and min_count is not None:
        raise ValueError("classes_covered: give min_share or min_count, not both")
    counts = predicted_class_counts(classifier, images, batch_size=batch_size)
    if min_count is not None:
        if min_count < 1:
            raise ValueError(f"classes_covered: min_count must be >= 1, got {min_count}")
        return int((counts >= min_count).sum())
    share = 0.01 if min_share is None else min_share
    if not 0 < share <= 1:
        raise ValueError(f"classes_covered: min_share must be in (0, 1], got {share}")
    return int((counts >= share * counts.sum()).sum())


def _kth_neighbour_distance(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (itself excluded)."""
    return torch.cat([torch.cdist(c, x).topk(k + 1, dim=1, largest=False).values[:, -1] for c in x.split(chunk)])


def prdc_points(real_features: torch.Tensor, fake_features: torch.Tensor, *, k: int = 5,
                chunk: int = 1024) -> dict[str, torch.Tensor]:
    """The per-point terms whose means are :func:`prdc`'s metrics: per generated sample, whether it
    lies in some real k-NN ball (``precision``) and how many real balls hold it (``density_hits``);
    per real sample, whether it lies in some generated ball (``recall``) and whether its own ball
    holds a generated sample (``coverage``). Radii from the full sets (float64)."""
    real, fake = real_features.double(), fake_features.to(real_features.device).double()
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"prdc needs more than k = {k} real and fake features (got {real.shape[0]}, {fake.shape[0]})")
    r_real = _kth_neighbour_distance(real, k, chunk)
    r_fake = _kth_neighbour_distance(fake, k, chunk)
    in_ball, hits = [], []
    for c in fake.split(chunk):
        inside = torch.cdist(c, real) <= r_real[None, :]
        in_ball.append(inside.any(1))
        hits.append(inside.sum(1))
    recalled, covered = [], []
    for c, r in zip(real.split(chunk), r_real.split(chunk), strict=True):
        d = torch.cdist(c, fake)
        recalled.append((d <= r_fake[None, :]).any(1))
        covered.append(d.min(1).values <= r)
    return {"precision": torch.cat(in_ball).cpu(), "density_hits": torch.cat(hits).cpu(),
            "recall": torch.cat(recalled).cpu(), "coverage": torch.cat(covered).cpu()}


def _prdc_means(points: dict[str, torch.Tensor], k: int, real_idx=None, fake_idx=None) -> dict[str, float]:
    f = (lambda t: t) if fake_idx is None else (lambda t: t[fake_idx])
    r = (lambda t: t) if real_idx is None else (lambda t: t[real_idx])
    m, n = len(f(points["precision"])), len(r(points["recall"]))
    return {"precision": int(f(points["precision"]).sum()) / m, "recall": int(r(points["recall"]).sum()) / n,
            "density": int(f(points["density_hits"]).sum()) / (k * m), "coverage": int(r(points["coverage"]).sum()) / n}


def prdc(real_features: torch.Tensor, fake_features: torch.Tensor, *, k: int = 5,
         chunk: int = 1024) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020)
    between two feature sets ``(N, d)`` and ``(M, d)``, by k-nearest-neighbour balls (float64,
    distances in chunks of ``chunk`` rows)."""
    return _prdc_means(prdc_points(real_features, fake_features, k=k, chunk=chunk), k)


def _inception_image(images: torch.Tensor) -> torch.Tensor:
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


def _build_inception(splits: int):
    """torchmetrics' Inception FID (pool features, 2048-d) and IS: the only place that builds the
    Inception network (torch-fidelity fetches its weights here). torchmetrics is imported here
    only: with torch._dynamo it pulls in, it costs about twice ``import torch``."""
    # torchmetrics: the GAN metrics only
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        return (FrechetInceptionDistance(feature=2048, normalize=True, reset_real_features=False),
                InceptionScore(splits=splits, normalize=True))


class InceptionMetrics:
    """FID (2048-d pool features) and IS of torchmetrics' default Inception network, built only
    when asked (clusters). Real statistics are accumulated once; :meth:`__call__` scores fakes."""

    def __init__(self, real: torch.Tensor, *, splits: int = 10, seed: int = 0, batch_size: int = 64,
                 device: torch.device | str = "cpu") -> None:
        self.splits, self.seed, self.batch_size, self.device = splits, seed, batch_size, torch.device(device)
        try:
            self.fid, self.inception_score = _build_inception(splits)
        except ModuleNotFoundError as e:
            raise InceptionUnavailable(
                f"Inception-based FID/IS need torch-fidelity ({e}): pip install 'doracle[inception]', or "
                "set inception: false to use the data set's classifier features only") from e
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad download a RuntimeError
            raise InceptionUnavailable(
                f"could not fetch or load the Inception weights ({type(e).__name__}: {e}). torch-fidelity "
                "downloads them on first use into torch hub's cache ($TORCH_HOME/hub/checkpoints): on a "
                "cluster, fetch them once on a node with network into a shared TORCH_HOME") from e
        self.fid, self.inception_score = self.fid.to(self.device), self.inception_score.to(self.device)
        for b in real.split(batch_size):
            self.fid.update(_inception_image(b.to(self.device)), real=True)

    def __call__(self, fake: torch.Tensor) -> dict[str, float]:
        self.fid.reset()  # keeps the real statistics (reset_real_features=False)
        self.inception_score.reset()
        for b in fake.split(self.batch_size):
            b = _inception_image(b.to(self.device))
            self.fid.update(b, real=False)
            self.inception_score.update(b)
        is_mean, is_std = _seeded_score(self.inception_score, self.seed)
        return {"inception_fid": float(self.fid.compute()), "inception_is_mean": is_mean,
                "inception_is_std": is_std}


class GenerativeMetrics:
    """Every GAN metric of generated images against a fixed real set, the real side computed once.

    ``classifier``: trained on the same data set (inputs in [0, 1], logits out); ``real``: held-out
    real images in [0, 1]; ``split_size``: images per IS split (``n // split_size`` splits of
    exactly that many, so the score does not move with the sample count); ``bootstrap``: resamples
    of the real images and of the generated ones (the same indices in every evaluator with the
    same ``seed`` and sizes: the evaluation jobs' paired comparisons) for FID's interval
    (:mod:`doracle.evaluation.intervals`); ``inception``: also Inception FID/IS (builds
    torchmetrics' Inception network, fetching its weights: clusters only). Call it with generated
    images for a dict.
    """

    def __init__(self, classifier: nn.Module, real: torch.Tensor, *, k: int = 5, split_size: int = 100,
                 seed: int = 0, min_share: float = 0.01, batch_size: int = 256, inception: bool = False,
                 bootstrap: int = 0) -> None:
        self.classifier, self.real = classifier, real
        self.k, self.split_size, self.seed, self.min_share, self.batch_size = k, split_size, seed, min_share, batch_size
        self.bootstrap = bootstrap
        self.penultimate = ClassifierFeatures(classifier, "penultimate")
        self.logits = ClassifierFeatures(classifier, "logits")
        self.real_features = extract(self.penultimate, real, batch_size=batch_size)
        self.real_stats = gaussian_stats(self.real_features)
        self._resamples: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.inception = (InceptionMetrics(real, splits=max(1, len(real) // split_size), seed=seed,
                                           device=_device(classifier)) if inception else None)

    def resample_indices(self, n_fake: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(real, fake)`` index matrices ``(bootstrap, n)``, from one CPU generator seeded with
        ``seed``: real indices first, then fake ones (the same for every model of this size)."""
        if n_fake not in self._resamples:
            g = torch.Generator(device="cpu").manual_seed(self.seed)
            n_real = self.real_features.shape[0]
            self._resamples[n_fake] = (torch.randint(n_real, (self.bootstrap, n_real), generator=g),
                                       torch.randint(n_fake, (self.bootstrap, n_fake), generator=g))
        return self._resamples[n_fake]

    def fid_replicates(self, fake_features: torch.Tensor) -> list[float]:
        """FID on each bootstrap resample of the real and the generated features."""
        real_idx, fake_idx = self.resample_indices(fake_features.shape[0])
        real, fake = self.real_features, fake_features.to(self.real_features.device)
        return [fid_from_stats(*gaussian_stats(real[r]), *gaussian_stats(fake[f]))
                for r, f in zip(real_idx, fake_idx, strict=True)]

    def other_replicates(self, points: dict[str, torch.Tensor], logits: torch.Tensor) -> dict[str, list]:
        """Precision, recall, density, coverage and classes covered on the same bootstrap resamples
        as FID's (the k-NN radii held at the full sets'; real samples resampled for recall and
        coverage, generated ones for the others): paired comparisons of any two models."""
        if not self.bootstrap:
            return {}
        real_idx, fake_idx = self.resample_indices(len(points["precision"]))
        predicted = logits.argmax(1).cpu()
        out: dict[str, list] = {"precision": [], "recall": [], "density": [], "coverage": [], "classes_covered": []}
        for r, f in zip(real_idx, fake_idx, strict=True):
            for key, v in _prdc_means(points, self.k, r, f).items():
                out[key].append(v)
            counts = torch.bincount(predicted[f], minlength=logits.shape[1])
            out["classes_covered"].append(int((counts >= self.min_share * counts.sum()).sum()))
        return out

    def __call__(self, fake: torch.Tensor) -> dict:
        logits = extract(self.logits, fake, batch_size=self.batch_size)
        counts = torch.bincount(logits.argmax(1).cpu(), minlength=logits.shape[1])
        splits = len(fake) // self.split_size
        if splits < 1:
            raise ValueError(f"IS splits of {self.split_size} images need at least that many samples (got {len(fake)})")
        is_mean, is_std = score_from_logits(logits, splits=splits, seed=self.seed, split_size=self.split_size)
        fake_features = extract(self.penultimate, fake, batch_size=self.batch_size)
        fid = fid_from_stats(*self.real_stats, *gaussian_stats(fake_features.to(self.real_features.device)))
        replicates = self.fid_replicates(fake_features) if self.bootstrap else []
        points = prdc_points(self.real_features, fake_features, k=self.k)
        covered = int((counts >= self.min_share * counts.sum()).sum())
        out = {
            "fid": fid, "fid_interval": centered_interval(fid, replicates), "fid_bootstrap": replicates,
            "bootstrap": self.bootstrap, "bootstrap_replicates": self.other_replicates(points, logits),
            "is_mean": is_mean, "is_std": is_std, "is_splits": splits, "is_split_size": self.split_size,
            "classes_covered": covered,
            "classes_min_share": self.min_share, "num_classes": int(counts.numel()),
            "class_counts": counts.tolist(),
            **_prdc_means(points, self.k), "k": self.k,
            "features": f"classifier penultimate ({self.penultimate.num_features}-d)",
            "n_real": int(self.real.shape[0]), "n_fake": int(fake.shape[0]), "seed": self.seed,
        }
        if self.inception is not None:
            out.update(self.inception(fake))
        return out
