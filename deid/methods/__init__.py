"""De-identification methods: one contract (:class:`DeidMethod`), one registry by name.

A new method lives in its own module, opens with a one-line citation of its paper, subclasses
:class:`DeidMethod`, decorates itself with :func:`register_method` (a hyphenated name) and imports
torch and its networks inside its functions; its module and names get one line in
:data:`deid.methods.registry.METHOD_MODULES`. The module is imported the first time one of its
methods is asked for, so ``deid methods`` and config validation never load torch; the common test
then checks it.
"""

from deid.methods.base import DeidMethod, check_images, check_output  # noqa: F401
from deid.methods.registry import available_methods, get_method, method_class, register_method  # noqa: F401

__all__ = ["DeidMethod", "available_methods", "get_method", "method_class", "register_method",
           "check_images", "check_output"]
