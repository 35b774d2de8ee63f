"""``python -m training.launch STAGE ...``"""

import sys

from training.launch.cli import main

sys.exit(main())
