"""Games the double-oracle engine plays: the adversarial-training game; the GAN game's building
blocks (gan_math.py: payoffs and the deployed mixture; gan_train.py: training loops and oracles)
ahead of its job layer."""
