import sys

from doracle.cli import main

sys.exit(main())
