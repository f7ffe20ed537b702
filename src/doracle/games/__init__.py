"""Games the double-oracle engine plays: the adversarial-training game; the GAN game's building
blocks (gan_math.py) ahead of its job layer."""
