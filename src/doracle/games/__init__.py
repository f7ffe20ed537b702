"""Games the double-oracle engine plays: the adversarial-training game (the GAN game follows)."""
