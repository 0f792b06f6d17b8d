"""How the model's arithmetic runs on the hardware at hand: the linear layers' kernel choices
(:mod:`.linear`) and the optional int8 fast mode (:mod:`.int8`). The model reads the same either way."""
