"""Training: the trainer (:mod:`.trainer`), what defenses see of it (:mod:`.context`) and the model cache
(:mod:`.cache`)."""
