"""annt: adversarial robustness of DoReFa-quantized neural networks.

Pipeline (one module each): data -> architectures/quantize/layers -> training -> attacks -> evaluate -> report.
"""
__version__ = "0.1.0"

from .errors import AnntError, ConfigError, DataError, ModelError  # noqa: E402
from .api import load_config, run_config  # noqa: E402
from .data import load_dataset, load_sample  # noqa: E402

__all__ = ["AnntError", "ConfigError", "DataError", "ModelError", "load_config", "run_config",
           "load_dataset", "load_sample", "__version__"]
