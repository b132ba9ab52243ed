import sys

from molab.cli import main

sys.exit(main())
