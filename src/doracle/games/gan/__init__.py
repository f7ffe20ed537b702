"""The GAN game (DO-GAN, params ``game: gan``), in one place: the game as the pipeline sees it
(:mod:`.game`, torch-free, with its metrics job), its network jobs and strategy I/O (:mod:`.jobs`),
the payoff arithmetic and the deployed mixture (:mod:`.arithmetic`) and the training loops
(:mod:`.train`). Its report is :mod:`doracle.report.gan` (the report rule's code only). Importing
this package imports nothing: the light jobs load only :mod:`.game`."""
