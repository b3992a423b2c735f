"""pbx: a telephone exchange you import.

An asyncio SIP stack (registrar, proxy), an RTP media engine with a C hot path, and call-center
building blocks. See README.md for the quick start.
"""

from pbx.errors import ConfigError, ParseError, PbxError

__all__ = ["ConfigError", "ParseError", "PbxError", "__version__"]
__version__ = "0.1.0"
