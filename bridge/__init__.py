"""BigCommerce → Refersion bridge: reports paid BigCommerce orders to Refersion, exactly once."""

__version__ = "0.1.0"
