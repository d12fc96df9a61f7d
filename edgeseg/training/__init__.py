"""edgeseg.training: the training wing (never imported by the runtime)."""
