"""The ``resources`` section: what each rule family asks a cluster for (the SLURM executor
plugin's names)."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from doracle.config.base import PosInt, Strict

GRES = r"^[A-Za-z0-9_]+(:[A-Za-z0-9_.]+)?(:\d+[TGM]?)?$"  # name[:type][:count], as sbatch --gres takes it


# sbatch options that have their own key below (the SLURM executor also refuses them in slurm_extra)
_MANAGED = {"--gres": "gres", "--gpus": "gpu", "-G": "gpu", "--partition": "slurm_partition",
            "-p": "slurm_partition", "--mem": "mem_mb", "--time": "runtime", "-t": "runtime",
            "--cpus-per-task": "cpus_per_task", "-c": "cpus_per_task", "--constraint": "constraint",
            "-C": "constraint"}


class JobResources(Strict):
    """What one job of a rule family asks a cluster for: Snakemake resources, which the SLURM
    executor plugin turns into sbatch options. Local runs use none of it (only ``threads``)."""

    gpu: Annotated[int, Field(ge=0)] = 1
    gpu_model: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+$")] | None = None
    gres: Annotated[str, Field(pattern=GRES)] | None = None
    cpus_per_task: PosInt | None = None
    mem_mb: PosInt = 2000
    runtime: PosInt = 60
    slurm_partition: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    constraint: str | None = None
    slurm_extra: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.gpu_model and not self.gpu:
            raise ValueError(f"gpu_model {self.gpu_model!r} needs gpu >= 1")
        if self.gpu and self.gres and self.gres.split(":")[0] == "gpu":
            raise ValueError(f"ask for GPUs with gpu ({self.gpu}) or with gres ({self.gres!r}), not both")
        return self

    @field_validator("slurm_extra")
    @classmethod
    def _extra(cls, v):
        if v is None:
            return v
        for word in v.split():
            opt = word.split("=")[0]
            if opt in _MANAGED:
                raise ValueError(f"{opt} has its own key: use {_MANAGED[opt]}")
        return v


class Resources(Strict):
    """Cluster resources per rule family (each job shape of doracle.jobtable names its family;
    the light rules run on the submitting host). Defaults are small enough for a laptop-sized
    node; params.yaml documents values for a GPU cluster."""

    train: JobResources = Field(default_factory=JobResources)
    best_response: JobResources = Field(default_factory=JobResources)
    payoff: JobResources = Field(default_factory=JobResources)
    evaluate: JobResources = Field(default_factory=lambda: JobResources(mem_mb=3000, runtime=120))
