"""xtuner: zero-shot cross-lingual transfer sweeps in the XTREME style.

Train on English, select on English dev, evaluate zero-shot on every language.
See README.md and docs/ for the design.
"""

from xtuner.errors import XtunerError

__version__ = "0.1.0"
__all__ = ["XtunerError", "__version__"]
