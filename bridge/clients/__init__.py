"""One module per outside system: BigCommerce and Refersion."""
