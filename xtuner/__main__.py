import sys

from xtuner.cli import main

sys.exit(main())
