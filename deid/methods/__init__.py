"""De-identification methods: one contract (:class:`DeidMethod`), one registry by name.

Importing this package registers every built-in method. A new method lives in its own module,
opens with a one-line citation of its paper, subclasses :class:`DeidMethod`, decorates itself
with :func:`register_method`, and is imported below; the common test then checks it.
"""

from deid.methods.base import DeidMethod, check_images, check_output  # noqa: F401
from deid.methods.registry import available_methods, get_method, method_class, register_method  # noqa: F401
# Registering imports: one line per method module.
from deid.methods import baselines  # noqa: F401,E402
from deid.methods import fadenet  # noqa: F401,E402
from deid.methods import latent_shift  # noqa: F401,E402
from deid.methods import ksame  # noqa: F401,E402
from deid.methods import mi_adversarial  # noqa: F401,E402
from deid.methods import substitution  # noqa: F401,E402
from deid.methods import ksame_net  # noqa: F401,E402

__all__ = ["DeidMethod", "available_methods", "get_method", "method_class", "register_method",
           "check_images", "check_output"]
