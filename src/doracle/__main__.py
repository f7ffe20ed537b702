from doracle.cli import run

run()
