from doracle.forkserver import run

run()
