"""doracle: double-oracle adversarial training and DO-GAN training.

The package is organised in rooms (see docs/ARCHITECTURE.md):

* ``doracle.engine``   - game-generic double oracle: state, meta-solvers, pruning (no torch)
* ``doracle.games``    - the adversarial-training game (and later the GAN game)
* ``doracle.attacks``  - perturbation strategies, registered by name
* ``doracle.defenses`` - training methods, registered by name
* ``doracle.models``   - architectures registered in timm's registry
* ``doracle.data``     - datasets (scikit-learn digits offline; MNIST, CIFAR-10, SVHN, TinyImageNet downloaded)
* ``doracle.evaluation``, ``doracle.report`` - honest robustness numbers, plots and tables
* ``doracle.cli``      - the only entry point besides the Snakemake rules
"""

__version__ = "0.1.0"
